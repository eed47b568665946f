-- Expiry notices (API.md section 4): an outbox. A notice is recorded before
-- it is sent; the unique key makes it one record per credential (or token
-- string), threshold, expiry and recipient, however many servers look.
CREATE TABLE notices (
    -- ntc_...
    id TEXT PRIMARY KEY NOT NULL,
    -- expiring, expired or summary
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- The credential's client_id, or the tenant's id for a summary.
    target TEXT NOT NULL,
    -- The API token string's id; '' for a client secret or a summary.
    token_id TEXT NOT NULL,
    -- Days before expiry; 0 for expired; for a summary, its UTC day number.
    threshold BIGINT NOT NULL,
    -- The expiry the notice is about; for a summary, the day's start.
    expires_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    -- Where it is filed for reach (GET /admin/v1/notices), as audit events.
    tenant_path TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- Set while a server is sending it; a crashed server's claim lapses.
    claimed_until BIGINT,
    -- pending, sent or failed
    status TEXT NOT NULL,
    last_error TEXT,
    UNIQUE (target, token_id, kind, threshold, expires_at, recipient)
);
CREATE INDEX notices_due_idx ON notices (status, next_attempt_at);
CREATE INDEX notices_tenant_path_idx ON notices (tenant_path);

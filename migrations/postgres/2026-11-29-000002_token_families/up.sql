-- Renewal families (API.md section 2, "Renewal"): one row per token that was
-- renewed, renewed from, or revoked since this table exists. A renewed token
-- names its parent, so revoking a token reaches every token renewed from it.
-- Renewal and revocation of the same token serialise on the parent's row.
CREATE TABLE token_families (
    -- A jti (access token) or an api_tokens id (API token).
    token_id TEXT PRIMARY KEY NOT NULL,
    -- access_token or api_token; a renewal keeps the kind.
    kind TEXT NOT NULL,
    -- The token this one was renewed from; NULL for an original.
    parent_id TEXT,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set in the transaction that revokes the token (the token's own
    -- revocation record stays in revoked_access_tokens or api_tokens).
    revoked_at BIGINT
);
CREATE INDEX token_families_parent_idx ON token_families (parent_id);

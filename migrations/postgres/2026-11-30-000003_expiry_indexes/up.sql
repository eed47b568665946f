-- Retention and expiry notices find credentials by when they expire or were
-- revoked: without these, each purge batch and each notice look would read
-- every client.
CREATE INDEX clients_expires_at_idx ON clients (expires_at);
CREATE INDEX clients_revoked_at_idx ON clients (revoked_at);
CREATE INDEX api_tokens_expires_at_idx ON api_tokens (expires_at);

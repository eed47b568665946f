-- Retention removes, a batch at a time, what hangs off a purged client and
-- what has outlived its use (API.md section 4, "Retention"). Each of these
-- statements names its rows by a column that had no index, so each batch
-- read the whole table: renewal records and revocations grow with traffic,
-- the audit log without end.
CREATE INDEX token_families_client_idx ON token_families (client_id);
CREATE INDEX token_families_expires_at_idx ON token_families (expires_at);
CREATE INDEX revoked_access_tokens_expires_at_idx ON revoked_access_tokens (expires_at);
CREATE INDEX user_setup_links_expires_at_idx ON user_setup_links (expires_at);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX api_tokens_revoked_at_idx ON api_tokens (revoked_at);
CREATE INDEX notices_sent_idx ON notices (status, sent_at);

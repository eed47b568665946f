DROP INDEX api_tokens_expires_at_idx;
DROP INDEX clients_revoked_at_idx;
DROP INDEX clients_expires_at_idx;

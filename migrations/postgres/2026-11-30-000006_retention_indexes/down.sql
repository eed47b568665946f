DROP INDEX notices_sent_idx;
DROP INDEX api_tokens_revoked_at_idx;
DROP INDEX audit_events_at_idx;
DROP INDEX user_setup_links_expires_at_idx;
DROP INDEX revoked_access_tokens_expires_at_idx;
DROP INDEX token_families_expires_at_idx;
DROP INDEX token_families_client_idx;

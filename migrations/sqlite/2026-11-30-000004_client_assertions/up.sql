-- Client assertions (API.md sections 2 and 3, issue 13): private_key_jwt
-- keys registered inline or by URL, federated subjects, trusted issuers,
-- and the single-use record of assertion ids.

-- client_secret_basic, client_secret_post or private_key_jwt.
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
-- A JWK Set (JSON text) of public keys, or NULL.
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
-- The client's (issuer, subject) pairs as JSON, as the admin API shows
-- them; client_federated_subjects is the same list, indexed for lookup.
ALTER TABLE clients ADD COLUMN federated_subjects TEXT NOT NULL DEFAULT '[]';

CREATE TABLE client_federated_subjects (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    PRIMARY KEY (issuer, subject, client_id)
);
CREATE INDEX client_federated_subjects_client_idx ON client_federated_subjects (client_id);

-- External issuers a tenant trusts for workload identity federation.
CREATE TABLE trusted_issuers (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    issuer TEXT NOT NULL,
    jwks_uri TEXT,
    description TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, issuer)
);
CREATE INDEX trusted_issuers_issuer_idx ON trusted_issuers (issuer);

-- Each (issuer, jti) is accepted once until the assertion's exp, on every
-- node; a row whose expiry passed may be taken again, and the purge prunes.
CREATE TABLE assertion_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX assertion_jtis_expires_at_idx ON assertion_jtis (expires_at);

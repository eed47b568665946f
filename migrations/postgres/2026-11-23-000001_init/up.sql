-- Times are Unix seconds (BIGINT) on both backends so that the two migration
-- sets stay identical column for column (checked by tests/api/store.rs).
CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    parent_id TEXT REFERENCES tenants (id),
    -- Materialised path "/<root id>/<child id>/": a subtree is a prefix match.
    path TEXT NOT NULL UNIQUE,
    owner_emails TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX tenants_parent_idx ON tenants (parent_id);

CREATE TABLE roles (
    name TEXT PRIMARY KEY NOT NULL,
    scopes TEXT NOT NULL,
    builtin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO roles (name, scopes, builtin, created_at) VALUES
    ('admin', 'clients:read clients:write clients:delete tenants:read tenants:write audit:read introspect', TRUE, 0),
    ('uploader', 'upload', TRUE, 0),
    ('reader', 'read', TRUE, 0),
    ('resource_server', 'introspect', TRUE, 0);

CREATE TABLE device_groups (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL REFERENCES roles (name),
    scopes TEXT NOT NULL,
    device_group_id TEXT REFERENCES device_groups (id),
    owner TEXT,
    owner_email TEXT,
    status TEXT NOT NULL,
    expires_at BIGINT,
    can_renew BOOLEAN NOT NULL,
    allowed_ips TEXT NOT NULL,
    access_token_ttl BIGINT NOT NULL,
    token_lifetime BIGINT NOT NULL,
    audience TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT,
    -- Bumped by every change; guards concurrent admin edits.
    version BIGINT NOT NULL
);
CREATE INDEX clients_tenant_idx ON clients (tenant_id);

CREATE TABLE client_secrets (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- NULL: current secret. Set: a replaced secret still honoured until then.
    expires_at BIGINT
);
CREATE INDEX client_secrets_client_idx ON client_secrets (client_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_client_idx ON api_tokens (client_id);

CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    tenant_id TEXT,
    -- The tenant's path when the event happened: a caller reads the events
    -- of its subtree, and they outlive a deleted tenant.
    tenant_path TEXT,
    ip TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_events_target_idx ON audit_events (target);
CREATE INDEX audit_events_tenant_path_idx ON audit_events (tenant_path);

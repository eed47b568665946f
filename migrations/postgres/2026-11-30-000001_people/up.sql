-- People (API.md section 4): users who sign in to the console, their
-- one-time setup links and their server-side sessions, and the personal API
-- access key (a client with user_id set).
CREATE TABLE users (
    -- usr_...
    user_id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL,
    -- active or disabled
    status TEXT NOT NULL,
    -- Argon2id PHC string; NULL until the person chooses a password.
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT,
    version BIGINT NOT NULL
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_folded_idx ON users (lower(email));
CREATE INDEX users_tenant_idx ON users (tenant_id);

-- One live link per user: making one deletes the user's older ones.
CREATE TABLE user_setup_links (
    -- SHA-256 (hex) of the link's secret; the secret itself is never stored.
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX user_setup_links_user_idx ON user_setup_links (user_id);

-- Server-side sessions, so every node honours a sign-out at once.
CREATE TABLE sessions (
    -- SHA-256 (hex) of the cookie value.
    session_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- A personal API access key: a client_credentials client of one user.
-- No foreign key: SQLite cannot drop a column that has one (down.sql).
ALTER TABLE clients ADD COLUMN user_id TEXT;
CREATE INDEX clients_user_idx ON clients (user_id);

-- The built-in admin holds the new scopes, and so do existing admin clients
-- (every admin scope before them sorts first, so appending keeps the order).
UPDATE roles SET scopes = scopes || ' users:read users:write'
    WHERE name = 'admin' AND builtin = TRUE;
UPDATE clients SET scopes = CASE WHEN scopes = '' THEN 'users:read users:write'
        ELSE scopes || ' users:read users:write' END
    WHERE role = 'admin' AND scopes NOT LIKE '%users:%';

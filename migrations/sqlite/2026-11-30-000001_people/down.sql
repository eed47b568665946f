UPDATE clients SET scopes = TRIM(REPLACE(REPLACE(REPLACE(scopes,
        'users:write', ''), 'users:read', ''), '  ', ' '))
    WHERE role = 'admin';
UPDATE roles SET scopes = TRIM(REPLACE(REPLACE(REPLACE(scopes,
        'users:write', ''), 'users:read', ''), '  ', ' '))
    WHERE name = 'admin' AND builtin = TRUE;
DROP INDEX clients_user_idx;
ALTER TABLE clients DROP COLUMN user_id;
DROP TABLE sessions;
DROP TABLE user_setup_links;
DROP TABLE users;

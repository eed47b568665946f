-- Custom roles belong to a tenant and can be given only within its subtree.
-- Built-ins have none. Existing custom roles move to the root tenant, where
-- they were visible to everyone before.
-- No foreign key: SQLite cannot drop a column that has one (down.sql), and
-- deleting a tenant that owns roles is refused by the service (409).
ALTER TABLE roles ADD COLUMN tenant_id TEXT;
UPDATE roles SET tenant_id = (
    SELECT id FROM tenants WHERE parent_id IS NULL ORDER BY created_at, id LIMIT 1
) WHERE builtin = FALSE;
-- Role names travel in tokens: one name means one thing, whatever its case.
CREATE UNIQUE INDEX roles_name_folded_idx ON roles (lower(name));
CREATE INDEX roles_tenant_idx ON roles (tenant_id);
CREATE INDEX clients_role_idx ON clients (role);

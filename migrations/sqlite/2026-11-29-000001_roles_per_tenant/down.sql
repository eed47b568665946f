DROP INDEX clients_role_idx;
DROP INDEX roles_tenant_idx;
DROP INDEX roles_name_folded_idx;
ALTER TABLE roles DROP COLUMN tenant_id;

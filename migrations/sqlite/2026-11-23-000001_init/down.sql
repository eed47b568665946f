DROP TABLE audit_events;
DROP TABLE revoked_access_tokens;
DROP TABLE api_tokens;
DROP TABLE client_secrets;
DROP TABLE clients;
DROP TABLE device_groups;
DROP TABLE roles;
DROP TABLE tenants;

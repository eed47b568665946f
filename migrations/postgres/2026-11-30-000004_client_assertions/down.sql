DROP TABLE assertion_jtis;
DROP TABLE trusted_issuers;
DROP TABLE client_federated_subjects;
ALTER TABLE clients DROP COLUMN federated_subjects;
ALTER TABLE clients DROP COLUMN jwks_uri;
ALTER TABLE clients DROP COLUMN jwks;
ALTER TABLE clients DROP COLUMN token_endpoint_auth_method;

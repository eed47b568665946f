//! Integration tests: the real server on port 0, over HTTP. SQLite by
//! default; PostgreSQL when KEYWARD_TEST_DATABASE_URL=postgres://... is set.

mod fault_env;
mod helpers;

mod admin_clients;
mod admin_tenants;
mod api_reference;
mod assertions;
mod bounds;
mod browser;
mod cli;
mod cluster;
mod console;
mod directory;
mod discovery;
mod faults;
mod interop;
mod introspect;
mod keys;
mod notices;
mod openapi;
mod ops;
mod proxies;
mod renew;
mod retention;
mod revoke;
mod security;
mod sessions;
mod startup;
mod store;
mod tenant_moves;
mod token;
mod users;

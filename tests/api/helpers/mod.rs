//! Test harness, grouped by what each part is:
//! - `app`: `TestApp`, the real application on port 0 with its own keys, data
//!   directory and store, and the shortcuts that set up its state;
//! - `request`: HTTP requests to it (`app.request("GET", path)...send()`) and
//!   the `TestResponse` they answer with;
//! - `cli`: `CliRunner`, the `keyward` binary run against a store;
//! - `postgres`: which store a test uses, PostgreSQL schemas, and
//!   `postgres_or_skip` for the tests that are about PostgreSQL itself.
//!
//! Store: SQLite in a temporary directory, or, when KEYWARD_TEST_DATABASE_URL
//! is set (postgres://...), a fresh PostgreSQL schema per test, dropped at the end.

mod app;
mod cli;
mod issuer;
mod postgres;
mod request;
pub mod schema;

pub use app::*;
pub use cli::*;
pub use issuer::*;
pub use postgres::*;
pub use request::*;

/// Decodes a JWT's header and claims without verifying (for asserting shape).
pub fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let decode = |p: &str| -> serde_json::Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

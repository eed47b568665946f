//! Which store a test uses, and PostgreSQL for the tests that need it.
//!
//! `cargo test` needs only Rust: without KEYWARD_TEST_DATABASE_URL nothing
//! here connects to PostgreSQL, and the tests that are about PostgreSQL itself
//! say that they did not run (`postgres_or_skip`). With it set, they run, and
//! an unreachable server fails them loudly.

use std::io::Write as _;
use std::sync::OnceLock;

use keyward::store::{AnyConnection, ConnectionManager};

/// The variable that turns on the PostgreSQL pass.
pub const TEST_DATABASE_URL: &str = "KEYWARD_TEST_DATABASE_URL";

/// What the README and `.ci/run` set it to.
pub const EXAMPLE_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// KEYWARD_TEST_DATABASE_URL when it names a PostgreSQL server.
fn postgres_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// True in the PostgreSQL pass: every test's store is a PostgreSQL schema.
pub fn using_postgres() -> bool {
    postgres_url().is_some()
}

/// The PostgreSQL server of the PostgreSQL pass, known to be reachable.
pub struct Postgres {
    base_url: String,
}

/// The PostgreSQL server for a test that is about PostgreSQL itself, or None
/// (after one line on stderr saying `test` did not run) when
/// KEYWARD_TEST_DATABASE_URL is unset. Panics if it is set and unreachable.
pub fn postgres_or_skip(test: &str) -> Option<Postgres> {
    let Some(base_url) = postgres_url() else {
        // Straight to the process's stderr: libtest captures `eprintln!` of
        // passing tests, and this line is for the person running them.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped {test}: set {TEST_DATABASE_URL}={EXAMPLE_POSTGRES_URL} to run it"
        );
        return None;
    };
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = REACHABLE.get_or_init(|| connect(&base_url).map(drop)) {
        panic!("{TEST_DATABASE_URL}={base_url} is set but PostgreSQL is unreachable: {e}");
    }
    Some(Postgres { base_url })
}

impl Postgres {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A new schema of its own on this server, dropped on drop.
    pub fn schema(&self) -> PgSchema {
        PgSchema::create_on(&self.base_url)
    }
}

/// A PostgreSQL schema of its own, dropped on drop.
pub struct PgSchema {
    base_url: String,
    pub name: String,
}

impl PgSchema {
    fn create_on(base_url: &str) -> PgSchema {
        let name = format!("kw_test_{}", &keyward::tokens::opaque::random_id("")[..16]);
        let mut conn = connect(base_url).unwrap_or_else(|e| {
            panic!("PostgreSQL at {base_url} is needed by this test and is unreachable: {e}")
        });
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            &format!("CREATE SCHEMA {name}"),
        )
        .expect("create schema");
        PgSchema {
            base_url: base_url.to_string(),
            name,
        }
    }

    /// A URL whose connections use only this schema.
    pub fn url(&self) -> String {
        with_search_path(&self.base_url, &self.name)
    }
}

pub fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut conn) = connect(&self.base_url) {
            let _ = diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            );
        }
    }
}

pub fn connect(url: &str) -> Result<AnyConnection, String> {
    ConnectionManager::new(url)?
        .establish()
        .map_err(|e| e.to_string())
}

/// A store URL for a new test: a new SQLite file in `dir`, or, in the
/// PostgreSQL pass, a new schema.
pub fn new_store(dir: &std::path::Path) -> (String, Option<PgSchema>) {
    match postgres_url() {
        Some(base_url) => {
            let schema = PgSchema::create_on(&base_url);
            (schema.url(), Some(schema))
        }
        None => (
            format!("sqlite://{}", dir.join("data").join("keyward.db").display()),
            None,
        ),
    }
}

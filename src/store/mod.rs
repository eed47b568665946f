//! The store: one diesel code base over PostgreSQL (production) and SQLite
//! (zero-setup default). Nothing here knows about HTTP.

pub mod api_tokens;
pub mod assertion_jtis;
pub mod audit;
pub mod changes;
pub mod clients;
pub mod device_groups;
pub mod families;
pub mod models;
pub mod notices;
pub mod retention;
pub mod revoked;
pub mod roles;
pub mod schema;
pub mod sessions;
pub mod tenants;
pub mod trusted_issuers;
pub mod tx;
pub mod users;

pub use tx::{Conn, Tx};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Key of the PostgreSQL advisory lock held while migrating and bootstrapping,
/// so that several servers starting at once do the work once. ("kw" in ASCII.)
const MIGRATION_LOCK_KEY: i64 = 0x6b77_0001;

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend is chosen by the URL scheme alone. diesel's own
    /// `MultiConnection::establish` tries each backend in turn, which would
    /// turn a mistyped PostgreSQL URL into a silent SQLite file.
    pub fn from_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite://") || url.starts_with("file:") {
            Ok(Backend::Sqlite)
        } else {
            Err(format!(
                "unsupported database URL scheme in {:?}: use postgres://, postgresql:// or sqlite://",
                redact_url(url)
            ))
        }
    }
}

/// A URL with any password replaced, for messages and logs: the userinfo's
/// and a `password=` query parameter's (libpq reads both).
pub fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// r2d2 manager that opens the backend named by the URL scheme.
#[derive(Clone)]
pub struct ConnectionManager {
    url: String,
    backend: Backend,
    /// Bumped whenever the store is seen to fail (a request's connection
    /// died, or the change channel did). Every idle connection validated
    /// before the bump is tested once (`SELECT 1`) at its next checkout, so
    /// the dead ones of a restart or a mass termination are all dropped by
    /// the first request that comes along, not one per request; in steady
    /// state a checkout costs one atomic load.
    suspect_epoch: Arc<AtomicU64>,
    /// Off behind a transaction-mode pooler (PgBouncer), where named
    /// prepared statements do not survive from one transaction to the next.
    statement_cache: bool,
}

/// A pooled connection and what the pool knows about it.
pub struct PoolConnection {
    conn: AnyConnection,
    /// The suspect epoch at which it last proved alive.
    validated: u64,
    /// Its last use failed because the store was out of reach.
    broken: bool,
}

impl std::ops::Deref for PoolConnection {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// The pool prints its manager: never with the password in the URL.
impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("url", &redact_url(&self.url))
            .field("backend", &self.backend)
            .finish()
    }
}

impl ConnectionManager {
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(ConnectionManager {
            url: url.to_string(),
            backend: Backend::from_url(url)?,
            suspect_epoch: Arc::new(AtomicU64::new(0)),
            statement_cache: true,
        })
    }

    pub fn establish(&self) -> ConnectionResult<AnyConnection> {
        let mut conn = self.open()?;
        // Every statement counts, for /metrics (queries per request).
        let queries = crate::metrics::DB_QUERIES.clone();
        conn.set_instrumentation(move |event: diesel::connection::InstrumentationEvent<'_>| {
            if let diesel::connection::InstrumentationEvent::StartQuery { .. } = event {
                queries.inc();
            }
        });
        if !self.statement_cache {
            // diesel then sends each statement unnamed, in one round trip.
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        Ok(conn)
    }

    fn open(&self) -> ConnectionResult<AnyConnection> {
        match self.backend {
            Backend::Postgres => {
                diesel::PgConnection::establish(&self.url).map(AnyConnection::Postgresql)
            }
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").unwrap_or(&self.url);
                let mut conn = diesel::SqliteConnection::establish(path)?;
                // WAL lets readers work beside the one writer; busy_timeout makes
                // a second writer wait instead of failing at once.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    /// The store was seen to fail: test every idle connection before reuse.
    pub fn suspect(&self) {
        self.suspect_epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether the connection is inside a transaction (or its transaction state
/// is broken): such a connection must never be handed out again.
fn in_transaction(conn: &mut AnyConnection) -> bool {
    let depth = match conn {
        AnyConnection::Sqlite(inner) => {
            AnsiTransactionManager::transaction_manager_status_mut(inner).transaction_depth()
        }
        AnyConnection::Postgresql(inner) => {
            AnsiTransactionManager::transaction_manager_status_mut(inner).transaction_depth()
        }
    };
    !matches!(depth, Ok(None))
}

impl ManageConnection for ConnectionManager {
    type Connection = PoolConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<PoolConnection, r2d2::Error> {
        let validated = self.suspect_epoch.load(Ordering::Acquire);
        let conn = self.establish().map_err(r2d2::Error::ConnectionError)?;
        Ok(PoolConnection {
            conn,
            validated,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut PoolConnection) -> Result<(), r2d2::Error> {
        let epoch = self.suspect_epoch.load(Ordering::Acquire);
        if conn.validated >= epoch {
            return Ok(());
        }
        conn.conn
            .batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)?;
        conn.validated = epoch;
        Ok(())
    }

    /// A connection whose last use lost the store, or that comes back
    /// inside an open transaction (a panic mid-transaction: on SQLite it
    /// would still hold the write lock), is dropped, never reused.
    fn has_broken(&self, conn: &mut PoolConnection) -> bool {
        conn.broken || in_transaction(&mut conn.conn)
    }
}

/// Errors that can say whether the database connection itself failed.
pub trait StoreFailure {
    fn is_unavailable(&self) -> bool;
}

impl StoreFailure for StoreError {
    fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query(e) => is_unavailable(e),
            StoreError::Migration(_) => false,
        }
    }
}

pub type DbPool = Pool<ConnectionManager>;
pub type DbConnection = PooledConnection<ConnectionManager>;

/// Errors of the store gateway, before a service gives them meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// The gateway to the database: sync diesel on actix's blocking pool.
/// Handlers never hold a connection across an `.await`.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    /// The manager's: bumped when the store is seen to fail.
    suspect_epoch: Arc<AtomicU64>,
    backend: Backend,
    url: String,
    queries: prometheus::IntCounter,
    /// This Db's own count of round trips (the metric is per process).
    operations: Arc<AtomicU64>,
    /// Told of the changes committed through this Db (its node's cache).
    subscriber: Arc<RwLock<Option<Arc<changes::Subscriber>>>>,
}

impl Db {
    /// Builds the pool without opening a connection, so a server can start
    /// (and answer /readyz 503) while the database is still down.
    pub fn connect(url: &str, max_size: u32) -> Result<Db, String> {
        Db::connect_with(url, max_size, true)
    }

    /// `statement_cache: false` for a transaction-mode pooler.
    pub fn connect_with(url: &str, max_size: u32, statement_cache: bool) -> Result<Db, String> {
        // Fail fast: the token endpoint answers 503 rather than hang.
        Db::connect_waiting(url, max_size, statement_cache, Duration::from_secs(2))
    }

    /// As `connect_with`, waiting up to `checkout` for a connection: the
    /// CLI, a one-shot process on a possibly busy host, waits longer than a
    /// request should.
    pub fn connect_waiting(
        url: &str,
        max_size: u32,
        statement_cache: bool,
        checkout: Duration,
    ) -> Result<Db, String> {
        let mut manager = ConnectionManager::new(url)?;
        manager.statement_cache = statement_cache;
        let backend = manager.backend;
        let suspect_epoch = manager.suspect_epoch.clone();
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(checkout)
            // Cheap: a real test only after the store was seen to fail.
            .test_on_check_out(true)
            .error_handler(Box::new(PoolErrorLog))
            .build_unchecked(manager);
        Ok(Db {
            pool,
            suspect_epoch,
            backend,
            url: url.to_string(),
            queries: crate::metrics::DB_OPERATIONS.clone(),
            operations: Arc::new(AtomicU64::new(0)),
            subscriber: Arc::new(RwLock::new(None)),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set_subscriber(&self, subscriber: Arc<changes::Subscriber>) {
        if let Ok(mut slot) = self.subscriber.write() {
            *slot = Some(subscriber);
        }
    }

    /// This node's cache, to be told of what its transactions commit.
    pub fn subscriber(&self) -> Option<Arc<changes::Subscriber>> {
        self.subscriber.read().ok().and_then(|s| s.clone())
    }

    pub fn operations(&self) -> Arc<AtomicU64> {
        self.operations.clone()
    }

    /// The same pool for a node's background work (the last_used_at
    /// flush): its round trips count in the metric but not in
    /// `operations`, which tells what requests cost.
    pub fn background(&self) -> Db {
        Db {
            operations: Arc::new(AtomicU64::new(0)),
            ..self.clone()
        }
    }

    pub fn get(&self) -> Result<DbConnection, StoreError> {
        self.queries.inc();
        self.operations.fetch_add(1, Ordering::Relaxed);
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + StoreFailure + Send + 'static,
    {
        let db = self.clone();
        let subscriber = self.subscriber();
        match actix_web::web::block(move || {
            let mut conn = db.get()?;
            let result = f(&mut Conn::new(&mut conn, subscriber));
            if matches!(&result, Err(e) if e.is_unavailable()) {
                conn.broken = true;
                db.suspect();
            }
            drop(conn);
            result
        })
        .await
        {
            Ok(result) => result,
            Err(e) => Err(E::from(StoreError::Unavailable(format!(
                "blocking pool: {e}"
            )))),
        }
    }

    /// Runs `f` here, on this thread, as `run` would on the blocking pool
    /// (the CLI and tests).
    pub fn run_here<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E>,
        E: From<StoreError> + StoreFailure,
    {
        let subscriber = self.subscriber();
        let mut conn = self.get()?;
        let result = f(&mut Conn::new(&mut conn, subscriber));
        if matches!(&result, Err(e) if e.is_unavailable()) {
            conn.broken = true;
            self.suspect();
        }
        result
    }

    /// Whether the store answers right now, with its schema (for /readyz:
    /// a database dropped and recreated empty is not ready).
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.get()?;
        if let Err(e) = conn.batch_execute("SELECT 1 FROM tenants LIMIT 1") {
            conn.broken = true;
            self.suspect();
            return Err(e.into());
        }
        Ok(())
    }

    /// How many times the store was seen to fail so far (see `suspect`).
    pub fn suspicions(&self) -> u64 {
        self.suspect_epoch.load(Ordering::Acquire)
    }

    /// The store was seen to fail (by a request or by the change channel):
    /// every idle connection is tested before its next use.
    pub fn suspect(&self) {
        self.suspect_epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct PoolErrorLog;

impl<E: std::fmt::Display> r2d2::HandleError<E> for PoolErrorLog {
    fn handle_error(&self, error: E) {
        log::warn!("database connection failed: {error}");
    }
}

/// Runs `f` in one write transaction (services use `Conn::write`, which adds
/// announcements and the audit log to it). On SQLite it begins `IMMEDIATE`, taking
/// the write lock up front: a deferred transaction that reads and then writes
/// fails with SQLITE_BUSY when another writer got in between, and busy_timeout
/// cannot help with that.
fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let depth = match conn {
        AnyConnection::Sqlite(inner) => {
            AnsiTransactionManager::transaction_manager_status_mut(inner).transaction_depth()
        }
        AnyConnection::Postgresql(inner) => {
            AnsiTransactionManager::transaction_manager_status_mut(inner).transaction_depth()
        }
    };
    let outermost = matches!(depth, Ok(None));
    match conn {
        // PostgreSQL, or nested: diesel's own (a savepoint when nested).
        _ if !outermost => conn.transaction(f),
        AnyConnection::Postgresql(_) => conn.transaction(f),
        AnyConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
            // A panic inside must not send the connection back to the pool
            // still holding the write lock: every later writer would wait.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)));
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(panic) => {
                    if let AnyConnection::Sqlite(inner) = conn {
                        if let Err(rollback) = AnsiTransactionManager::rollback_transaction(inner) {
                            log::error!("rollback after a panic failed: {rollback}");
                        }
                    }
                    std::panic::resume_unwind(panic)
                }
            };
            match outcome {
                Ok(value) => {
                    let AnyConnection::Sqlite(inner) = conn else {
                        unreachable!("backend cannot change inside a transaction")
                    };
                    AnsiTransactionManager::commit_transaction(inner)?;
                    Ok(value)
                }
                Err(e) => {
                    if let AnyConnection::Sqlite(inner) = conn {
                        if let Err(rollback) = AnsiTransactionManager::rollback_transaction(inner) {
                            log::error!("rollback failed: {rollback}");
                        }
                    }
                    Err(e)
                }
            }
        }
    }
}

/// Runs the pending migrations of the connection's backend. On PostgreSQL
/// the migrations and `then` (bootstrap) run in one transaction under a
/// transaction-scoped advisory lock, so several servers starting on an empty
/// database create one root tenant and one admin, and the lock holds through
/// a transaction-mode pooler (a session lock would not: its unlock could
/// reach another server connection). DDL is transactional in PostgreSQL, so
/// a failed start leaves nothing half-migrated.
pub fn migrate_and<T>(
    conn: &mut AnyConnection,
    then: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        AnyConnection::Postgresql(_) => conn.transaction(|conn| {
            if let AnyConnection::Postgresql(pg) = conn {
                pg.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                ))?;
                pg.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?;
            }
            then(conn)
        }),
        AnyConnection::Sqlite(lite) => {
            // SQLite has one writer at a time; the migration harness runs each
            // migration in its own transaction.
            lite.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| StoreError::Migration(e.to_string()))?;
            then(conn)
        }
    }
}

/// Reverts every migration (for tests and `migrate --revert-all` style tooling).
pub fn revert_all(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let result = match conn {
        AnyConnection::Postgresql(pg) => pg.revert_all_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        AnyConnection::Sqlite(lite) => lite.revert_all_migrations(SQLITE_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| StoreError::Migration(e.to_string()))
}

/// Whether a diesel error means the store itself is out of reach or out of
/// service (rather than a bad query): the caller gets 503 and the connection
/// is dropped. PostgreSQL: a lost or refused connection, a statement timeout,
/// a schema that is gone (a database dropped and recreated). SQLite: busy
/// beyond the timeout, read-only, full, or an I/O error.
pub fn is_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    const OUT_OF_SERVICE: &[&str] = &[
        "server closed the connection",
        "terminating connection",
        "no connection to the server",
        "connection has been closed",
        "could not send data to server",
        "could not receive data from server",
        // libpq, when a connection dies mid-protocol.
        "lost synchronization with server",
        "another command is already in progress",
        "connection to server was lost",
        "connection not open",
        "canceling statement due to statement timeout",
        "canceling statement due to user request",
        "the database system is",
        "is not currently accepting connections",
        "does not exist",
        "database is locked",
        "readonly database",
        "database or disk is full",
        "disk I/O error",
        "unable to open database file",
    ];
    match e {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        // A commit that failed because the connection went, whose rollback
        // then failed too (seen in a PostgreSQL restart under load): the
        // commit's own error says why.
        Error::RollbackErrorOnCommit { commit_error, .. } => is_unavailable(commit_error),
        // A connection whose transaction state could not be restored is
        // unusable (the pool drops it): the store failed, not the query.
        Error::BrokenTransactionManager => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            OUT_OF_SERVICE.iter().any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// Whether PostgreSQL aborted the transaction to let a concurrent one go on
/// (a deadlock, or a serialization failure): nothing of it was done, and
/// running it again will most likely succeed. Deadlocks carry no kind of
/// their own in diesel; their message is PostgreSQL's (SQLSTATE 40P01).
pub fn is_contention(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_lost_with_the_connection_is_unavailable_not_a_bug() {
        use diesel::result::{DatabaseErrorKind, Error};
        let lost = || {
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("server closed the connection unexpectedly".to_string()),
            )
        };
        let both = Error::RollbackErrorOnCommit {
            rollback_error: Box::new(lost()),
            commit_error: Box::new(lost()),
        };
        assert!(is_unavailable(&both));
        assert!(is_unavailable(&Error::BrokenTransactionManager));
        let bad_query = Error::RollbackErrorOnCommit {
            rollback_error: Box::new(lost()),
            commit_error: Box::new(Error::NotFound),
        };
        assert!(!is_unavailable(&bad_query));
    }

    #[test]
    fn a_deadlock_or_serialization_failure_is_contention_not_an_outage() {
        use diesel::result::{DatabaseErrorKind, Error};
        let deadlock = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("deadlock detected".to_string()),
        );
        let serialization = Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new("could not serialize access".to_string()),
        );
        for e in [&deadlock, &serialization] {
            assert!(is_contention(e));
            assert!(!is_unavailable(e));
        }
        assert!(!is_contention(&Error::NotFound));
    }

    #[test]
    fn the_connection_manager_debug_hides_the_password() {
        let manager = ConnectionManager::new("postgres://kw:hunter2secret@db.example/kw").unwrap();
        let shown = format!("{manager:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
    }
}

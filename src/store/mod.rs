//! The store: one diesel code base over PostgreSQL (production) and SQLite
//! (zero-setup default). Nothing here knows about HTTP.

pub mod changes;
pub mod families;
pub mod models;
pub mod schema;

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

/// A URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
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
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: String,
    backend: Backend,
}

impl ConnectionManager {
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(ConnectionManager {
            url: url.to_string(),
            backend: Backend::from_url(url)?,
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
}

impl ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        self.establish().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// diesel cannot see that a PostgreSQL socket died; `Db::run` flags the
    /// connection when its work failed for that reason, and it is dropped here.
    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        CONNECTION_BROKEN.with(|flag| flag.replace(false))
    }
}

thread_local! {
    static CONNECTION_BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
        let manager = ConnectionManager::new(url)?;
        let backend = manager.backend;
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            // Fail fast: the token endpoint answers 503 rather than hang.
            .connection_timeout(Duration::from_secs(2))
            .test_on_check_out(false)
            .error_handler(Box::new(PoolErrorLog))
            .build_unchecked(manager);
        Ok(Db {
            pool,
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
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + StoreFailure + Send + 'static,
    {
        let db = self.clone();
        let subscriber = self.subscriber.read().ok().and_then(|s| s.clone());
        match actix_web::web::block(move || {
            let mut conn = db.get()?;
            let result = changes::with_subscriber(subscriber, || f(&mut conn));
            if matches!(&result, Err(e) if e.is_unavailable()) {
                CONNECTION_BROKEN.with(|flag| flag.set(true));
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
        F: FnOnce(&mut AnyConnection) -> Result<T, E>,
        E: From<StoreError>,
    {
        let subscriber = self.subscriber.read().ok().and_then(|s| s.clone());
        let mut conn = self.get()?;
        changes::with_subscriber(subscriber, || f(&mut conn))
    }

    /// Whether the database answers right now (for /readyz).
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.get()?;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    }
}

#[derive(Debug)]
struct PoolErrorLog;

impl<E: std::fmt::Display> r2d2::HandleError<E> for PoolErrorLog {
    fn handle_error(&self, error: E) {
        log::warn!("database connection failed: {error}");
    }
}

/// Runs `f` in one write transaction. On SQLite it begins `IMMEDIATE`, taking
/// the write lock up front: a deferred transaction that reads and then writes
/// fails with SQLITE_BUSY when another writer got in between, and busy_timeout
/// cannot help with that.
pub fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
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
    if outermost {
        changes::discard();
    }
    let result = match conn {
        // PostgreSQL, or nested: diesel's own (a savepoint when nested).
        _ if !outermost => conn.transaction(f),
        AnyConnection::Postgresql(_) => conn.transaction(f),
        AnyConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
            match f(conn) {
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
    };
    if outermost {
        match &result {
            Ok(_) => changes::committed(),
            Err(_) => changes::discard(),
        }
    }
    result
}

/// Runs the pending migrations of the connection's backend. On PostgreSQL the
/// whole of `then` (bootstrap) runs under the same advisory lock, so several
/// servers starting on an empty database create one root tenant and one admin.
pub fn migrate_and<T>(
    conn: &mut AnyConnection,
    then: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            pg.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let result = pg
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|_| ())
                .map_err(|e| StoreError::Migration(e.to_string()))
                .and_then(|()| then(conn));
            if let AnyConnection::Postgresql(pg) = conn {
                if let Err(e) =
                    pg.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                {
                    log::warn!("could not release the migration lock: {e}");
                }
            }
            result
        }
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

/// Whether a diesel error means the database itself is out of reach.
pub fn is_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.contains("server closed the connection")
                || message.contains("terminating connection")
                || message.contains("no connection to the server")
                || message.contains("database is locked")
        }
        _ => false,
    }
}

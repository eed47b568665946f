//! `Application::build` opens the keys and the store, migrates, bootstraps,
//! binds its own listener (port 0 works) and returns a server to run.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, Service as _};
use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::http::{self, AppState, LastUsed};
use crate::oauth::throttle::FailureThrottle;
use crate::service::{bootstrap, credentials, ServiceError};
use crate::store::{self, Backend, Db, StoreError};
use crate::tokens::keys::{KeyError, KeyRing};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Database(String),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

impl From<StoreError> for StartupError {
    fn from(e: StoreError) -> Self {
        StartupError::Database(e.to_string())
    }
}

impl From<ServiceError> for StartupError {
    fn from(e: ServiceError) -> Self {
        StartupError::Setup(e.to_string())
    }
}

/// Opens the store named by the settings (creating the data directory for a
/// default SQLite file), migrates it and creates the root tenant and the
/// bootstrap admin on first start.
pub fn open_store(
    settings: &Settings,
    pool_size: u32,
    checkout: Duration,
) -> Result<(Db, Option<PathBuf>), StartupError> {
    let url = settings.database_url();
    let db = Db::connect_waiting(&url, pool_size, settings.db_statement_cache, checkout)
        .map_err(StartupError::Database)?;
    if db.backend() == Backend::Sqlite {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| StartupError::Setup(format!("{}: {e}", settings.data_dir.display())))?;
        let path = url.strip_prefix("sqlite://").unwrap_or(&url);
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StartupError::Setup(format!("{}: {e}", parent.display())))?;
            }
        }
    }
    let mut conn = db.get().map_err(|e| {
        StartupError::Database(format!("{} is unreachable: {e}", store::redact_url(&url)))
    })?;
    let created = store::migrate_and(&mut conn, |conn| {
        // Before any server runs: no node's cache to tell.
        bootstrap::ensure_root_and_admin(&mut store::Conn::detached(conn), &settings.data_dir)
            .map_err(|e| StoreError::Migration(e.to_string()))
    })?;
    Ok((db, created))
}

/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a stopping server tries to write the last `last_used_at` times:
/// past it they are lost (they lag by design), rather than the exit hanging
/// on a database that does not answer.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// How long a request waits for a pooled connection: past it, 503 rather
/// than a hang.
pub const SERVER_CHECKOUT: Duration = Duration::from_secs(2);
/// The CLI is one-shot and may run on a busy host: it waits longer.
pub const CLI_CHECKOUT: Duration = Duration::from_secs(10);

/// Opens a store that must already exist (every CLI command but `migrate`):
/// only `serve` and `migrate` create one, so a command run in the wrong
/// directory says which store it looked for instead of making a new one with
/// a second bootstrap admin.
pub fn open_existing_store(settings: &Settings) -> Result<Db, StartupError> {
    let url = settings.database_url();
    let missing = |why: &str| {
        StartupError::Setup(format!(
            "no keyward store at {} ({why}); only `keyward serve` and `keyward migrate` create one. \
             Run this where the server runs, or set KEYWARD_DATABASE_URL / KEYWARD_DATA_DIR",
            store::redact_url(&url)
        ))
    };
    match Backend::from_url(&url).map_err(StartupError::Database)? {
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap_or(&url);
            if !std::path::Path::new(path).exists() {
                return Err(missing("the file does not exist"));
            }
        }
        Backend::Postgres => {
            let probe = Db::connect_waiting(&url, 1, settings.db_statement_cache, CLI_CHECKOUT)
                .map_err(StartupError::Database)?;
            probe.get().map_err(|e| {
                StartupError::Database(format!("{} is unreachable: {e}", store::redact_url(&url)))
            })?;
            if probe.ping().is_err() {
                return Err(missing("the database has no keyward schema"));
            }
        }
    }
    Ok(open_store(settings, 1, CLI_CHECKOUT)?.0)
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    retention: crate::service::retention::Policy,
    notices: crate::service::notices::NoticePolicy,
    /// None without KEYWARD_SMTP_URL: notices are recorded, not sent.
    mailer: Option<Arc<crate::mail::Mailer>>,
}

impl Application {
    pub fn build(settings: Settings) -> Result<Application, StartupError> {
        crate::install_crypto_provider();
        crate::metrics::init();
        let keys = Arc::new(KeyRing::open(
            &settings.keys_dir,
            Some(settings.signing_alg),
        )?);
        let mailer = match (&settings.smtp_url, &settings.smtp_from) {
            (None, _) => {
                log::info!(
                    "expiry notices: KEYWARD_SMTP_URL is not set, so no mail is sent; notices are still recorded (GET /admin/v1/notices)"
                );
                None
            }
            (Some(_), None) => {
                return Err(StartupError::Setup(
                    "KEYWARD_SMTP_FROM is needed with KEYWARD_SMTP_URL".into(),
                ))
            }
            (Some(url), Some(from)) => {
                let mailer = crate::mail::Mailer::new(url, from, settings.smtp_ca_file.as_deref())
                    .map_err(StartupError::Setup)?;
                log::info!("expiry notices: sent through {}", crate::mail::redact(url));
                Some(Arc::new(mailer))
            }
        };
        let (db, created) = open_store(&settings, settings.db_pool_size, SERVER_CHECKOUT)?;
        if let Some(path) = created {
            log::info!(
                "first start: root tenant and bootstrap admin created; credentials written to {}",
                path.display()
            );
        }
        let listener = TcpListener::bind(&settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        let issuer = match &settings.issuer {
            Some(_) => settings.issuer(),
            None => {
                let derived = format!("http://{local}");
                // Tokens carry the issuer: nodes that derive different ones
                // from their bind addresses reject each other's tokens.
                log::warn!(
                    "KEYWARD_ISSUER is not set: the issuer is {derived}, derived from the bind address; \
                     set KEYWARD_ISSUER when several nodes share a store or the server sits behind a proxy"
                );
                derived
            }
        };
        let clock = settings.clock.clone().unwrap_or_else(crate::clock::system);
        if settings.allow_insecure_jwks {
            log::warn!(
                "KEYWARD_ALLOW_INSECURE_JWKS is true: key sets are fetched over http and from private addresses (development and tests only)"
            );
        }
        let assertion_keys = crate::assertions::key_cache::KeyCache::new(
            crate::assertions::fetch::KeyFetcher::new(settings.allow_insecure_jwks),
            clock.clone(),
        );
        let directory = crate::directory::Directory::with_clock(keys.clone(), clock);
        let changes = directory.start(&db, settings.listen_database_url.as_deref());
        let throttle = Arc::new(FailureThrottle::from_settings(&settings));
        let auth = crate::oauth::authenticate::Authenticator {
            directory: directory.clone(),
            db: db.clone(),
            issuer: issuer.clone(),
            throttle: throttle.clone(),
            assertion_keys,
            token_endpoint: format!("{issuer}/oauth/token"),
        };
        let renewals = crate::service::renewals::Renewals::start(&db);
        let state = web::Data::new(AppState {
            db,
            keys,
            directory,
            changes,
            auth,
            issuer,
            trusted_proxies: settings.trusted_proxies.clone(),
            last_used: LastUsed::default(),
            throttle,
            renewals,
        });
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap_fn(|req, srv| {
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let response = srv.call(req);
                    async move {
                        let response = response.await?;
                        crate::metrics::HTTP_REQUESTS
                            .with_label_values(&[route.as_str(), response.status().as_str()])
                            .inc();
                        Ok(response)
                    }
                })
                .configure(http::routes)
                .default_service(web::to(http::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        // Database work runs on actix's blocking threads; more of them than
        // pooled connections would only queue on the pool, and each thread
        // that allocates keeps a malloc arena (resident memory).
        server = server.worker_max_blocking_threads(settings.db_pool_size.max(2) as usize);
        // On SIGTERM, requests in flight get this long to finish; one stuck
        // on a hung database must not hold the exit for actix's default 30 s.
        server = server.shutdown_timeout(SHUTDOWN_GRACE.as_secs());
        Ok(Application {
            port: local.port(),
            server: server.run(),
            state,
            retention: settings.retention(),
            notices: settings.notice_policy(),
            mailer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from outside (tests, embedding).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// This node's store gateway (tests write through it so that the node's
    /// cache hears of the change as it would of its own).
    pub fn db(&self) -> Db {
        self.state.db.clone()
    }

    /// This node's count of database round trips.
    pub fn db_operations(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.state.db.operations()
    }

    /// The `application_name` of this node's change listener (PostgreSQL).
    pub fn listener_name(&self) -> String {
        self.state.directory.listener_name().to_string()
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Runs the server and its background work until it is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let keys_state = self.state.clone();
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let keys = keys_state.keys.clone();
                match web::block(move || keys.refresh()).await {
                    Ok(Err(e)) => log::warn!("signing keys not reloaded: {e}"),
                    Err(e) => log::warn!("signing keys not reloaded: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        let usage_state = self.state.clone();
        let usage_db = self.state.db.background();
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                flush_last_used(&usage_state, &usage_db).await;
            }
        });
        // Retention: at start, then hourly; one server at a time does it
        // (the purge claim), the others find it taken and skip.
        let purge_state = self.state.clone();
        let purge_db = self.state.db.background();
        let policy = self.retention;
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                purge(&purge_state, &purge_db, policy).await;
            }
        });
        // Used client-assertion ids (see prune_assertion_ids) and, on SQLite,
        // the change log's old rows: every minute.
        let prune_state = self.state.clone();
        let prune_db = self.state.db.background();
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let at = prune_state.directory.now();
                let pruned = prune_db
                    .run(move |conn| crate::service::retention::prune_assertion_ids(conn, at))
                    .await;
                if let Err(e) = pruned {
                    // The store is down: the next minute tries again.
                    log::warn!("used assertion ids not pruned: {e}");
                }
                let pruned = prune_db
                    .run(crate::service::retention::prune_change_log)
                    .await;
                if let Err(e) = pruned {
                    log::warn!("change log not pruned: {e}");
                }
            }
        });
        // Expiry notices: at start, then every KEYWARD_NOTICE_INTERVAL.
        let notice_state = self.state.clone();
        let notice_db = self.state.db.background();
        let policy = self.notices.clone();
        let mailer = self.mailer.clone();
        actix_web::rt::spawn(async move {
            let every = Duration::from_secs(u64::try_from(policy.interval).unwrap_or(3600));
            let mut tick = actix_web::rt::time::interval(every);
            loop {
                tick.tick().await;
                notices_round(&notice_state, &notice_db, &policy, mailer.as_ref()).await;
            }
        });
        let result = self.server.await;
        self.state.directory.stop();
        let background = self.state.db.background();
        let flush = flush_last_used(&self.state, &background);
        if actix_web::rt::time::timeout(FINAL_FLUSH_LIMIT, flush)
            .await
            .is_err()
        {
            log::warn!(
                "last_used_at not written at shutdown: the store did not answer within {FINAL_FLUSH_LIMIT:?}"
            );
        }
        result
    }
}

/// One look for due notices: record what is due, then, with SMTP, send what
/// this server can claim. A store or SMTP outage costs this round only: what
/// was not recorded is recorded next time, what was not sent is retried.
async fn notices_round(
    state: &AppState,
    db: &Db,
    policy: &crate::service::notices::NoticePolicy,
    mailer: Option<&Arc<crate::mail::Mailer>>,
) {
    use crate::service::notices;
    let at = state.directory.now();
    let scheduling = policy.clone();
    match db
        .run(move |conn| notices::schedule(conn, &scheduling, at))
        .await
    {
        Ok(0) => {}
        Ok(n) => log::info!("expiry notices: {n} recorded"),
        Err(e) => log::warn!("expiry notices: not looked for: {e}"),
    }
    if let Some(mailer) = mailer {
        loop {
            let at = state.directory.now();
            let claimed = match db.run(move |conn| notices::claim(conn, at, 20)).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    log::warn!("expiry notices: none claimed: {e}");
                    break;
                }
            };
            if claimed.is_empty() {
                break;
            }
            for notice in claimed {
                let (sender, sending) = (mailer.clone(), notice.clone());
                let outcome = web::block(move || sender.send(&sending))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                match &outcome {
                    Ok(()) => crate::metrics::NOTICES.with_label_values(&["sent"]).inc(),
                    Err(e) => {
                        crate::metrics::NOTICES.with_label_values(&["failed"]).inc();
                        log::warn!(
                            "expiry notice {} to {} not sent: {e}",
                            notice.id,
                            notice.recipient
                        );
                    }
                }
                let (settling, at) = (policy.clone(), state.directory.now());
                if let Err(e) = db
                    .run(move |conn| notices::settle(conn, &settling, &notice, at, outcome))
                    .await
                {
                    // Its claim lapses and it is sent again: at most one repeat.
                    log::warn!("expiry notices: an outcome was not recorded: {e}");
                }
            }
        }
    }
    if let Ok(pending) = db.run(|conn| notices::pending(conn)).await {
        crate::metrics::NOTICES_PENDING.set(pending);
    }
}

/// How often a server looks for what retention removes.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

async fn purge(state: &AppState, db: &Db, policy: crate::service::retention::Policy) {
    let at = state.directory.now();
    let result = db
        .run(move |conn| crate::service::retention::purge(conn, policy, at, false))
        .await;
    match result {
        Ok(report) if report.elsewhere => log::info!("retention: another purge holds the lease"),
        Ok(report) if !report.clients.is_empty() || !report.api_tokens.is_empty() => log::info!(
            "retention: removed {} clients, {} API token strings and {} spent records",
            report.clients.len(),
            report.api_tokens.len(),
            report.records
        ),
        Ok(_) => {}
        // The store is down or busy: the next hour tries again.
        Err(e) => log::warn!("retention: purge not done: {e}"),
    }
}

async fn flush_last_used(state: &AppState, db: &Db) {
    let seen = state.last_used.drain(state.directory.now());
    if seen.is_empty() {
        return;
    }
    let result = db
        .run(move |conn| credentials::touch_last_used(conn, &seen).map_err(ServiceError::from))
        .await;
    if let Err(e) = result {
        log::warn!("last_used_at not written: {e}");
    }
}

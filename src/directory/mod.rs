//! The directory: what the hot paths (token, introspection, renewal) need to
//! know about credentials, kept in memory so that steady-state requests make
//! no database round trip.
//!
//! Three parts:
//! - `cache`: the memory itself and its rules (pure, unit-tested): what it
//!   holds, when it may be trusted, why a fill that raced an invalidation is
//!   not stored, how it stays bounded.
//! - `listener`: the PostgreSQL LISTEN thread that feeds it changes and
//!   heartbeats. The cache is used only while this node's channel is up and
//!   heard ("live"); while it is down every read goes to the database, and
//!   when it comes back the cache starts empty (events may have been lost).
//! - this facade: a cache miss becomes one database read, whose result is
//!   stored unless an invalidation happened meanwhile.
//!
//! A node applies its own changes right after commit (see `store::changes`),
//! before any later request of its own can read. On SQLite (one node, but
//! the CLI is another process) the channel is the change log, which every
//! writer fills in its transaction and the listener follows.
//!
//! Errors are the store's (`StoreError`): the callers turn them into their
//! own protocol's answer.

pub mod cache;
pub mod entry;
pub mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use cache::IssuerTrust;
use cache::{Cache, Remembered};
pub use entry::ClientEntry;
use entry::Shared;
use listener::Listener;

use crate::clock::{self, Clock};
use crate::service::credentials::{self, ApiTokenRecord, ClientRecord};
use crate::service::scopes::ScopeSet;
use crate::store::changes::{Change, Subscriber};
use crate::store::models::ClientSecret;
use crate::store::{revoked, tenants as store_tenants, Backend, Db, StoreError};
use crate::tokens::jwt::AccessClaims;
use crate::tokens::keys::KeyRing;
use crate::tokens::opaque::sha256_hex;

pub struct Directory {
    cache: Cache,
    keys: Arc<KeyRing>,
    listener: Listener,
    /// One parsed set per distinct scope string.
    scope_sets: Mutex<HashMap<String, Arc<ScopeSet>>>,
    /// What client entries hold alike (`entry`).
    shared: Shared,
}

/// Distinct scope strings remembered at most.
const SCOPE_SETS_CAPACITY: usize = 10_000;

impl Directory {
    pub fn new(keys: Arc<KeyRing>) -> Arc<Directory> {
        Directory::with_clock(keys, clock::system())
    }

    /// A directory that tells the time by `clock` (tests move it).
    pub fn with_clock(keys: Arc<KeyRing>, clock: Arc<dyn Clock>) -> Arc<Directory> {
        Arc::new(Directory {
            cache: Cache::new(clock),
            keys,
            listener: Listener::new(),
            scope_sets: Mutex::new(HashMap::new()),
            shared: Shared::new(),
        })
    }

    /// Unix seconds by the directory's clock: what the expiry of the
    /// credentials it hands out (clients, secrets in their grace, API
    /// tokens) is checked against.
    pub fn now(&self) -> i64 {
        self.cache.now()
    }

    /// The parsed set for a scope string, shared between equal strings.
    pub fn scope_set(&self, scopes: &str) -> Arc<ScopeSet> {
        let parse = || Arc::new(ScopeSet::parse(scopes).unwrap_or_default());
        let Ok(mut sets) = self.scope_sets.lock() else {
            return parse();
        };
        // Every bearer request comes here: a hit allocates nothing.
        if let Some(set) = sets.get(scopes) {
            return set.clone();
        }
        let set = parse();
        // Narrowed tokens can carry many distinct subsets: past the cap a
        // new one is parsed each time rather than remembered.
        if sets.len() < SCOPE_SETS_CAPACITY {
            sets.insert(scopes.to_string(), set.clone());
        }
        set
    }

    pub fn listener_name(&self) -> &str {
        self.listener.name()
    }

    pub fn is_live(&self) -> bool {
        self.cache.is_trusted()
    }

    /// Applies one change (from this process or from the channel).
    pub fn apply(&self, change: &Change) {
        self.cache.apply(change);
        if *change == Change::Keys {
            if let Err(e) = self.keys.refresh() {
                log::warn!("signing keys not reloaded: {e}");
            }
        }
    }

    pub async fn client(
        &self,
        db: &Db,
        client_id: &str,
    ) -> Result<Option<Arc<ClientEntry>>, StoreError> {
        if let Some(entry) = self.cache.client(client_id) {
            return Ok(Some(entry));
        }
        if self.cache.is_known_unknown(client_id) {
            return Ok(None);
        }
        let seen = self.cache.generation();
        let id = client_id.to_string();
        let loaded = db
            .run(move |conn| {
                credentials::load_for_secret_check(conn, &id).map_err(StoreError::from)
            })
            .await?;
        let Some((record, secrets)) = loaded else {
            self.cache.remember_unknown(client_id);
            return Ok(None);
        };
        let entry = Arc::new(self.entry(record, secrets));
        self.cache.fill_client(seen, client_id, entry.clone());
        Ok(Some(entry))
    }

    pub async fn api_token(
        &self,
        db: &Db,
        presented: &str,
    ) -> Result<Option<Arc<ApiTokenRecord>>, StoreError> {
        if !crate::tokens::opaque::is_well_formed(
            presented,
            crate::tokens::opaque::API_TOKEN_PREFIX,
        ) {
            return Ok(None);
        }
        let hash = sha256_hex(presented.as_bytes());
        if let Some(record) = self.cache.api_token(&hash) {
            return Ok(Some(record));
        }
        let seen = self.cache.generation();
        let token = presented.to_string();
        let found = db
            .run(move |conn| credentials::find_api_token(conn, &token).map_err(StoreError::from))
            .await?;
        let Some((token, owner)) = found else {
            return Ok(None);
        };
        let record = Arc::new(ApiTokenRecord {
            token,
            owner: Arc::new(self.entry(owner, Vec::new())),
        });
        self.cache.fill_api_token(seen, hash, record.clone());
        Ok(Some(record))
    }

    /// The compact form of a client as read, its scopes and the values it
    /// shares with other clients taken from this directory's.
    fn entry(&self, record: ClientRecord, secrets: Vec<ClientSecret>) -> ClientEntry {
        let scopes = self.scope_set(&record.client.scopes.to_string());
        ClientEntry::new(record, secrets, scopes, &self.shared)
    }

    pub async fn jti_revoked(&self, db: &Db, jti: &str) -> Result<bool, StoreError> {
        if let Some(revoked) = self.cache.jti_revoked(jti) {
            return Ok(revoked);
        }
        let jti = jti.to_string();
        db.run(move |conn| revoked::is_revoked(conn, &jti).map_err(StoreError::from))
            .await
    }

    /// The clients whose federated subjects list (issuer, subject).
    pub async fn federated_clients(
        &self,
        db: &Db,
        issuer: &str,
        subject: &str,
    ) -> Result<Arc<Vec<String>>, StoreError> {
        if let Some(found) = self.cache.federated(issuer, subject) {
            return Ok(found);
        }
        let seen = self.cache.generation();
        let (i, s) = (issuer.to_string(), subject.to_string());
        let found = Arc::new(
            db.run(move |conn| {
                crate::store::clients::with_federated_subject(conn, &i, &s)
                    .map_err(StoreError::from)
            })
            .await?,
        );
        self.cache
            .fill_federated(seen, issuer, subject, found.clone());
        Ok(found)
    }

    /// The tenants that trust `issuer`, with where each takes its keys.
    pub async fn issuer_trust(
        &self,
        db: &Db,
        issuer: &str,
    ) -> Result<Arc<Vec<IssuerTrust>>, StoreError> {
        if let Some(found) = self.cache.issuer_trust(issuer) {
            return Ok(found);
        }
        let seen = self.cache.generation();
        let i = issuer.to_string();
        let rows = db
            .run(move |conn| {
                crate::store::trusted_issuers::by_issuer(conn, &i).map_err(StoreError::from)
            })
            .await?;
        let found = Arc::new(
            rows.into_iter()
                .map(|(row, tenant_path)| IssuerTrust {
                    id: row.id,
                    tenant_path,
                    jwks_uri: row.jwks_uri,
                })
                .collect::<Vec<_>>(),
        );
        self.cache.fill_issuer_trust(seen, issuer, found.clone());
        Ok(found)
    }

    pub async fn tenant_path(
        &self,
        db: &Db,
        tenant_id: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(path) = self.cache.tenant_path(tenant_id) {
            return Ok(Some(path));
        }
        let seen = self.cache.generation();
        let id = tenant_id.to_string();
        let path = db
            .run(move |conn| store_tenants::path_of(conn, &id).map_err(StoreError::from))
            .await?;
        if let Some(path) = &path {
            self.cache.fill_tenant_path(seen, tenant_id, path.clone());
        }
        Ok(path)
    }

    /// The claims of a JWT this server signed, remembering good ones so a
    /// repeated token skips the signature check (until its `exp`).
    pub fn verify_jwt(&self, token: &str, issuer: &str) -> Option<Arc<AccessClaims>> {
        // A key removed by another process (the CLI on SQLite, where no
        // change channel exists) is noticed here, within 100 ms.
        self.keys.notice_changes();
        let key = cache::token_key(token);
        match self
            .cache
            .verified(&key, |kid| self.keys.current().find(kid).is_some())
        {
            Remembered::Valid(claims) => return Some(claims),
            Remembered::Refused => return None,
            Remembered::Unknown => {}
        }
        let (kid, claims) = crate::tokens::jwt::verify_keyed(&self.keys, token, issuer)?;
        let claims = Arc::new(claims);
        self.cache.remember_verified(key, kid, claims.clone());
        Some(claims)
    }

    /// Starts following the change channel (PostgreSQL's NOTIFY, SQLite's
    /// change log) on a thread of its own, and subscribes to the changes this node commits through `db`.
    /// `listen_url` is where the listener connects: the store's URL, or a
    /// direct one when the pool goes through a transaction-mode pooler
    /// (LISTEN needs a session of its own).
    pub fn start(self: &Arc<Self>, db: &Db, listen_url: Option<&str>) -> Arc<Subscriber> {
        let me = self.clone();
        let subscriber: Arc<Subscriber> = Arc::new(move |change: &Change| me.apply(change));
        db.set_subscriber(subscriber.clone());
        let started = match db.backend() {
            Backend::Postgres => {
                let url = listen_url.unwrap_or(db.url()).to_string();
                listener::spawn(self.clone(), url, db.background())
            }
            Backend::Sqlite => listener::spawn_log_follower(self.clone(), db.background()),
        };
        if let Err(e) = started {
            log::error!(
                "change listener not started ({e}); credentials are read from the database"
            );
        }
        subscriber
    }

    pub fn stop(&self) {
        self.listener.stop();
    }

    /// Whether the listener thread has been told to stop.
    pub fn stopping(&self) -> bool {
        self.listener.stopping()
    }
}

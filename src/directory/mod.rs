//! The directory: what the hot paths (token, introspection, renewal) need to
//! know about credentials, kept in memory so that steady-state requests make
//! no database round trip.
//!
//! Correctness rules:
//! - The cache is used only while this node's PostgreSQL LISTEN channel is
//!   up ("live"). Every change is NOTIFYed in its transaction and dropped here
//!   on delivery; while the channel is down every read goes to the database,
//!   and when it comes back the cache starts empty (events may have been lost).
//! - A node applies its own changes right after commit (see
//!   `store::changes`), before any later request of its own can read.
//! - A fill that raced with an invalidation is not stored: every invalidation
//!   bumps `generation`, and a fill stores only if it did not move meanwhile.
//! - Time-based state (expiry of clients, tokens, secrets in their grace) is
//!   kept as timestamps and checked at use, never cached as a verdict.
//! - On SQLite (one node, but the CLI is another process) it never goes live.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::oauth::OAuthError;
use crate::service::credentials::{self, ApiTokenRecord, ClientRecord};
use crate::service::scopes::ScopeSet;
use crate::service::tenants;
use crate::store::changes::{self, Change, Subscriber};
use crate::store::models::ClientSecret;
use crate::store::schema::revoked_access_tokens;
use crate::store::{Backend, Db};
use crate::tokens::jwt::AccessClaims;
use crate::tokens::keys::KeyRing;
use crate::tokens::opaque::sha256_hex;

/// A client as authentication needs it.
#[derive(Debug)]
pub struct ClientEntry {
    pub record: Arc<ClientRecord>,
    pub secrets: Vec<ClientSecret>,
    /// The client's scopes, allowed networks and audiences, parsed once.
    pub scopes: Arc<ScopeSet>,
    /// None when the stored list cannot be read: then nobody is allowed.
    pub allowed_ips: Option<Vec<ipnet::IpNet>>,
    pub audience: Vec<String>,
}

impl ClientEntry {
    /// Builds the entry, keeping only what the hot paths read: with 100,000
    /// clients in memory every byte counts. Names, owners and metadata stay
    /// in the store (the admin API reads them there); scope sets that are
    /// alike are shared.
    fn new(
        mut record: ClientRecord,
        secrets: Vec<ClientSecret>,
        scopes: Arc<ScopeSet>,
    ) -> ClientEntry {
        let client = &mut record.client;
        // Fail closed: a list (or an entry) that cannot be read allows nobody.
        let networks: Option<Vec<ipnet::IpNet>> =
            serde_json::from_str::<Vec<String>>(&client.allowed_ips)
                .ok()
                .and_then(|list| {
                    list.iter()
                        .map(|n| crate::config::parse_cidr(n).ok())
                        .collect()
                });
        let audience = serde_json::from_str(&client.audience).unwrap_or_default();
        for unused in [
            &mut client.name,
            &mut client.metadata,
            &mut client.allowed_ips,
            &mut client.audience,
        ] {
            *unused = String::new();
        }
        client.description = None;
        client.owner = None;
        client.owner_email = None;
        let secrets = secrets
            .into_iter()
            .map(|s| ClientSecret {
                id: String::new(),
                client_id: String::new(),
                ..s
            })
            .collect();
        ClientEntry {
            scopes,
            allowed_ips: networks,
            audience,
            record: Arc::new(record),
            secrets,
        }
    }

    /// Whether `ip` may use this client (no networks: any address).
    pub fn allows(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(networks) = &self.allowed_ips else {
            return false;
        };
        if networks.is_empty() {
            return true;
        }
        ip.is_some_and(|ip| networks.iter().any(|net| net.contains(&ip)))
    }
}

/// How many verified JWTs to remember (signature checks are the most costly
/// part of introspection; repeated tokens skip them).
const VERIFIED_CAPACITY: usize = 20_000;

/// The channel heartbeats every 500 ms: the node NOTIFYs itself through the
/// request pool and the listener must hear it, which proves both that the
/// store answers and that notifications from other sessions (other nodes'
/// changes) arrive. Three seconds without one (a connection that hangs
/// rather than fails: a failure is seen at the next 2 ms poll) and the cache
/// is bypassed. The grace is generous because a false alarm under full load
/// sends every request to the database at once; measured at 1 s, a
/// saturated 2-core machine tripped it.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
const HEARTBEAT_GRACE_MS: i64 = 3_000;

fn token_key(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Default)]
struct Maps {
    clients: HashMap<String, Arc<ClientEntry>>,
    api_tokens: HashMap<String, Arc<ApiTokenRecord>>,
    tenant_paths: HashMap<String, String>,
    revoked_jtis: HashSet<String>,
}

/// A verified token's claims and the kid of the key that verified it: a hit
/// counts only while that key is still in the key set.
struct VerifiedJwt {
    kid: String,
    claims: Arc<AccessClaims>,
}

pub struct Directory {
    live: AtomicBool,
    /// When the channel last proved alive (ms). A channel that hangs instead
    /// of failing stops counting as live after `HEARTBEAT_GRACE_MS`.
    last_beat_ms: std::sync::atomic::AtomicI64,
    generation: AtomicU64,
    maps: RwLock<Maps>,
    /// Keyed by the SHA-256 of the token: a tenth of the memory of the
    /// token itself, and no collision can hand one token another's claims.
    verified: RwLock<HashMap<[u8; 32], VerifiedJwt>>,
    keys: Arc<KeyRing>,
    stop: AtomicBool,
    /// The listener's `application_name`, unique per process start, so an
    /// operator can find (or a test can cut) this node's channel.
    listener_name: String,
    /// One parsed set per distinct scope string.
    scope_sets: std::sync::Mutex<HashMap<String, Arc<ScopeSet>>>,
    /// Client ids recently looked up and not found, with when that stops
    /// counting: a flood of made-up ids then costs one query per id and
    /// `UNKNOWN_TTL`, not one per request. Bounded by `UNKNOWN_CAPACITY`.
    unknown_clients: std::sync::Mutex<HashMap<String, Instant>>,
}

/// How long an unknown client id is remembered. A client created meanwhile
/// is announced (`Change::Client`), which drops the entry on every node that
/// follows the channel; ids are random, so nobody asks for one before it
/// exists except by guessing.
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
const UNKNOWN_CAPACITY: usize = 50_000;

impl Directory {
    pub fn new(keys: Arc<KeyRing>) -> Arc<Directory> {
        Arc::new(Directory {
            live: AtomicBool::new(false),
            last_beat_ms: std::sync::atomic::AtomicI64::new(0),
            generation: AtomicU64::new(0),
            maps: RwLock::new(Maps::default()),
            verified: RwLock::new(HashMap::new()),
            keys,
            stop: AtomicBool::new(false),
            listener_name: crate::tokens::opaque::random_id("keyward-listener-"),
            scope_sets: std::sync::Mutex::new(HashMap::new()),
            unknown_clients: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The parsed set for a scope string, shared between equal strings.
    pub fn scope_set(&self, scopes: &str) -> Arc<ScopeSet> {
        let parse = || Arc::new(ScopeSet::parse(scopes).unwrap_or_default());
        match self.scope_sets.lock() {
            Ok(mut sets) => sets.entry(scopes.to_string()).or_insert_with(parse).clone(),
            Err(_) => parse(),
        }
    }

    pub fn listener_name(&self) -> &str {
        &self.listener_name
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
            && now_ms() - self.last_beat_ms.load(Ordering::Acquire) < HEARTBEAT_GRACE_MS
    }

    fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one change (from this process or from the channel).
    pub fn apply(&self, change: &Change) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Client(id) => {
                self.forget_unknown(id);
                let mut maps = self.write();
                maps.clients.remove(id);
                maps.api_tokens
                    .retain(|_, t| &t.owner.client.client_id != id);
            }
            Change::ApiToken(hash) => {
                self.write().api_tokens.remove(hash);
            }
            Change::Jti(jti) => {
                self.write().revoked_jtis.insert(jti.clone());
            }
            Change::Tenants => {
                let mut maps = self.write();
                maps.clients.clear();
                maps.api_tokens.clear();
                maps.tenant_paths.clear();
            }
            Change::Keys => {
                if let Err(e) = self.keys.refresh() {
                    log::warn!("signing keys not reloaded: {e}");
                }
            }
        }
    }

    /// The channel is up: start from an empty cache and the full set of
    /// revoked, unexpired jtis.
    fn go_live(&self, revoked: Vec<String>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        {
            let mut maps = self.write();
            *maps = Maps::default();
            maps.revoked_jtis = revoked.into_iter().collect();
        }
        // Not trusted yet: `is_live` waits for the first heartbeat heard.
        self.last_beat_ms.store(0, Ordering::Release);
        self.live.store(true, Ordering::Release);
    }

    fn go_dark(&self) {
        if self.live.swap(false, Ordering::AcqRel) {
            // A stopping server closes its channel on purpose: not worth a warning.
            if self.stop.load(Ordering::Acquire) {
                log::info!("change channel closed: the server is stopping");
            } else {
                log::warn!(
                    "change channel lost: reading credentials from the database until it is back"
                );
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.write() = Maps::default();
    }

    /// Stores a value fetched while the generation was `seen`, unless an
    /// invalidation happened meanwhile.
    fn store(&self, seen: u64, put: impl FnOnce(&mut Maps)) {
        if !self.is_live() {
            return;
        }
        let mut maps = self.write();
        if self.generation.load(Ordering::Acquire) == seen {
            put(&mut maps);
        }
    }

    pub async fn client(
        &self,
        db: &Db,
        client_id: &str,
    ) -> Result<Option<Arc<ClientEntry>>, OAuthError> {
        if self.is_live() {
            if let Some(entry) = self.read().clients.get(client_id) {
                return Ok(Some(entry.clone()));
            }
        }
        if self.known_unknown(client_id) {
            return Ok(None);
        }
        let seen = self.generation.load(Ordering::Acquire);
        let id = client_id.to_string();
        let loaded = db
            .run(move |conn| {
                credentials::load_for_secret_check(conn, &id).map_err(OAuthError::from)
            })
            .await?;
        let Some((record, secrets)) = loaded else {
            self.remember_unknown(client_id);
            return Ok(None);
        };
        let scopes = self.scope_set(&record.client.scopes);
        let entry = Arc::new(ClientEntry::new(record, secrets, scopes));
        self.store(seen, |maps| {
            maps.clients.insert(client_id.to_string(), entry.clone());
        });
        Ok(Some(entry))
    }

    fn unknown(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.unknown_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn known_unknown(&self, client_id: &str) -> bool {
        let mut unknown = self.unknown();
        match unknown.get(client_id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                unknown.remove(client_id);
                false
            }
            None => false,
        }
    }

    fn remember_unknown(&self, client_id: &str) {
        // Ids longer than any this server issues are not worth the memory.
        if client_id.len() > 64 {
            return;
        }
        let now = Instant::now();
        let mut unknown = self.unknown();
        if unknown.len() >= UNKNOWN_CAPACITY {
            unknown.retain(|_, until| *until > now);
            if unknown.len() >= UNKNOWN_CAPACITY {
                // Full of live entries: a flood. Start over rather than grow.
                unknown.clear();
            }
        }
        unknown.insert(client_id.to_string(), now + UNKNOWN_TTL);
    }

    fn forget_unknown(&self, client_id: &str) {
        self.unknown().remove(client_id);
    }

    pub async fn api_token(
        &self,
        db: &Db,
        presented: &str,
    ) -> Result<Option<Arc<ApiTokenRecord>>, OAuthError> {
        if !crate::tokens::opaque::is_well_formed(
            presented,
            crate::tokens::opaque::API_TOKEN_PREFIX,
        ) {
            return Ok(None);
        }
        let hash = sha256_hex(presented.as_bytes());
        if self.is_live() {
            if let Some(record) = self.read().api_tokens.get(&hash) {
                return Ok(Some(record.clone()));
            }
        }
        let seen = self.generation.load(Ordering::Acquire);
        let token = presented.to_string();
        let found = db
            .run(move |conn| credentials::find_api_token(conn, &token).map_err(OAuthError::from))
            .await?;
        let Some(record) = found else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.store(seen, |maps| {
            maps.api_tokens.insert(hash, record.clone());
        });
        Ok(Some(record))
    }

    pub async fn jti_revoked(&self, db: &Db, jti: &str) -> Result<bool, OAuthError> {
        if self.is_live() {
            return Ok(self.read().revoked_jtis.contains(jti));
        }
        let jti = jti.to_string();
        db.run(move |conn| {
            revoked_access_tokens::table
                .find(&jti)
                .select(revoked_access_tokens::jti)
                .first::<String>(conn)
                .optional()
                .map(|found| found.is_some())
                .map_err(OAuthError::from)
        })
        .await
    }

    pub async fn tenant_path(
        &self,
        db: &Db,
        tenant_id: &str,
    ) -> Result<Option<String>, OAuthError> {
        if self.is_live() {
            if let Some(path) = self.read().tenant_paths.get(tenant_id) {
                return Ok(Some(path.clone()));
            }
        }
        let seen = self.generation.load(Ordering::Acquire);
        let id = tenant_id.to_string();
        let found = db
            .run(move |conn| tenants::find(conn, &id).map_err(OAuthError::from))
            .await?;
        let path = found.map(|t| t.path);
        if let Some(path) = &path {
            self.store(seen, |maps| {
                maps.tenant_paths
                    .insert(tenant_id.to_string(), path.clone());
            });
        }
        Ok(path)
    }

    /// The claims of a JWT this server signed, remembering good ones so a
    /// repeated token skips the signature check (until its `exp`).
    pub fn verify_jwt(&self, token: &str, issuer: &str) -> Option<Arc<AccessClaims>> {
        let now = chrono::Utc::now().timestamp();
        // A key removed by another process (the CLI on SQLite, where no
        // change channel exists) is noticed here, within 100 ms.
        self.keys.notice_changes();
        let key = token_key(token);
        if let Some(hit) = self.verified.read().ok()?.get(&key) {
            let valid = hit.claims.exp > now && self.keys.current().find(&hit.kid).is_some();
            return valid.then(|| hit.claims.clone());
        }
        let (kid, claims) = crate::tokens::jwt::verify_keyed(&self.keys, token, issuer)?;
        let claims = Arc::new(claims);
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= VERIFIED_CAPACITY {
                cache.retain(|_, c| c.claims.exp > now);
                if cache.len() >= VERIFIED_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                VerifiedJwt {
                    kid,
                    claims: claims.clone(),
                },
            );
        }
        Some(claims)
    }

    /// Starts following the change channel (PostgreSQL only) on a thread of
    /// its own, and subscribes to the changes this node commits through `db`.
    /// `listen_url` is where the listener connects: the store's URL, or a
    /// direct one when the pool goes through a transaction-mode pooler
    /// (LISTEN needs a session of its own).
    pub fn start(self: &Arc<Self>, db: &Db, listen_url: Option<&str>) -> Arc<Subscriber> {
        let me = self.clone();
        let subscriber: Arc<Subscriber> = Arc::new(move |change: &Change| me.apply(change));
        db.set_subscriber(subscriber.clone());
        if db.backend() == Backend::Postgres {
            let me = self.clone();
            let url = listen_url.unwrap_or(db.url()).to_string();
            let db = db.background();
            let spawned = std::thread::Builder::new()
                .name("keyward-changes".into())
                .spawn(move || me.follow(&url, &db));
            if let Err(e) = spawned {
                log::error!(
                    "change listener not started ({e}); credentials are read from the database"
                );
            }
        }
        subscriber
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether the listener thread has been told to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The listener loop: LISTEN, load the revoked jtis, then drain
    /// notifications every 2 ms and heartbeat every 500 ms, so that a dead
    /// connection is noticed at once and a hung or deaf one within 3 s.
    fn follow(&self, url: &str, db: &Db) {
        while !self.stop.load(Ordering::Acquire) {
            if let Err(e) = self.follow_once(url, db) {
                log::warn!("change channel: {e}");
                // The pool's connections may have died the same way.
                db.suspect();
            }
            self.go_dark();
            if !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// Sends this node's heartbeat through the request pool.
    fn send_beat(&self, db: &Db, seq: u64) -> Result<(), String> {
        let payload = format!("beat:{}:{seq}", self.listener_name);
        db.run_here(|conn| changes::notify(conn, &payload).map_err(crate::store::StoreError::from))
            .map_err(|e| e.to_string())
    }

    fn follow_once(&self, url: &str, db: &Db) -> Result<(), String> {
        use diesel::connection::SimpleConnection;
        // Named, so operators (and tests) can tell the listener apart.
        let sep = if url.contains('?') { '&' } else { '?' };
        let named = format!("{url}{sep}application_name={}", self.listener_name);
        let mut conn = diesel::PgConnection::establish(&named).map_err(|e| e.to_string())?;
        conn.batch_execute(&format!("LISTEN {}", changes::CHANNEL))
            .map_err(|e| e.to_string())?;
        let now = chrono::Utc::now().timestamp();
        let revoked: Vec<String> = revoked_access_tokens::table
            .filter(revoked_access_tokens::expires_at.gt(now))
            .select(revoked_access_tokens::jti)
            .load(&mut conn)
            .map_err(|e| e.to_string())?;
        self.go_live(revoked);
        let own_beat = format!("beat:{}:", self.listener_name);
        let mut seq: u64 = 0;
        let mut announced = false;
        let mut last_sent: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            for notification in conn.notifications_iter() {
                let notification = notification.map_err(|e| e.to_string())?;
                let payload = &notification.payload;
                // Any beat of ours heard on this session was sent after its
                // LISTEN: delivery works.
                if payload.starts_with(&own_beat) {
                    self.beat();
                    if !announced {
                        log::info!("change channel up: credential cache live");
                        announced = true;
                    }
                } else if let Some(change) = Change::parse(payload) {
                    self.apply(&change);
                }
            }
            if last_sent.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
                seq += 1;
                if let Err(e) = self.send_beat(db, seq) {
                    // The pool is down: no beat is heard and the cache goes
                    // unused within the grace; the listener itself stays.
                    log::debug!("heartbeat not sent: {e}");
                }
                last_sent = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

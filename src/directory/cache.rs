//! The directory's memory: what it knows about clients, API tokens, tenant
//! paths, revoked jtis, verified JWTs and unknown client ids, and whether
//! that knowledge may be trusted. Pure: no database, no HTTP, no threads;
//! time comes from a `Clock`, so tests move it instead of sleeping.
//!
//! Rules it keeps:
//! - Trusted only while live: after `go_live` and the first `beat`, and only
//!   until `HEARTBEAT_GRACE_MS` after the last one. While untrusted nothing is
//!   served from it and no fill is stored.
//! - A fill that raced with an invalidation is not stored: every invalidation
//!   bumps `generation`, a filler takes a `Generation` before it reads the
//!   database, and its fill is stored only if the generation did not move.
//! - Time-based state (expiry of clients, tokens, secrets in their grace) is
//!   kept as the stored timestamps and checked at use, never cached as a
//!   verdict; `now` tells the time to check it against.
//! - Every map is bounded; a bound reached drops entries, which only costs
//!   a query later. Revoked jtis are the exception: forgetting one would make
//!   a revoked token active again.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::ClientEntry;
use crate::clock::Clock;
use crate::service::credentials::ApiTokenRecord;
use crate::store::changes::Change;
use crate::tokens::jwt::AccessClaims;

/// How long the cache stays trusted after the last heartbeat heard. The
/// channel heartbeats every 500 ms (see `listener`); three seconds without
/// one (a connection that hangs rather than fails) and the cache is
/// bypassed. The grace is generous because a false alarm under full load
/// sends every request to the database at once; measured at 1 s, a
/// saturated 2-core machine tripped it.
pub const HEARTBEAT_GRACE_MS: i64 = 3_000;

/// How many verified JWTs to remember (signature checks are the most costly
/// part of introspection; repeated tokens skip them).
pub const VERIFIED_CAPACITY: usize = 20_000;

/// How long an unknown client id is remembered. A client created meanwhile
/// is announced (`Change::Client`), which drops the entry on every node that
/// follows the channel; ids are random, so nobody asks for one before it
/// exists except by guessing.
pub const UNKNOWN_TTL_MS: i64 = 5_000;
pub const UNKNOWN_CAPACITY: usize = 50_000;

/// Clients, API tokens and tenant paths are bounded by the rows in the store,
/// but a store can hold more than memory should: past these, arbitrary
/// entries are dropped. Clients: a million stay wholly cached, with half as
/// many again to grow into before any is dropped. At about 324 bytes a
/// client, its map slot included (`ClientEntry`; `cargo bench --bench
/// directory_memory`), a full map holds some 490 MB: the most the
/// directory's clients can take. (The table that holds a million holds up
/// to 1,835,008 entries, so the bound costs no second doubling.)
pub const CLIENT_CAPACITY: usize = 1_500_000;
pub const API_TOKEN_CAPACITY: usize = 250_000;
pub const TENANT_PATH_CAPACITY: usize = 100_000;
/// Federated lookups: (issuer, subject) pairs and issuers, found or not.
pub const FEDERATED_CAPACITY: usize = 100_000;

/// A tenant's trust in an external issuer, as authentication needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerTrust {
    pub id: String,
    pub tenant_path: String,
    pub jwks_uri: Option<String>,
}

/// Ids longer than any this server issues are not worth remembering.
const UNKNOWN_MAX_ID_LEN: usize = 64;

/// `last_beat_ms` before the first heartbeat of a channel: never trusted.
const NO_BEAT: i64 = i64::MIN;

/// The key of a verified token: its SHA-256, a tenth of the memory of the
/// token itself, and no collision can hand one token another's claims.
pub fn token_key(token: &str) -> [u8; 32] {
    crate::tokens::opaque::sha256(token.as_bytes())
}

/// The generation seen before a fill's database read; see `Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a fill is stored only with the generation seen before its read"]
pub struct Generation(u64);

/// What the cache remembers of a JWT's signature check.
#[derive(Debug)]
pub enum Remembered {
    /// Never checked (or forgotten): verify it.
    Unknown,
    /// Checked once, but expired since or its key is no longer published.
    Refused,
    Valid(Arc<AccessClaims>),
}

#[derive(Default)]
struct Maps {
    /// Keyed by a boxed id: 8 bytes less a slot than a `String`.
    clients: HashMap<Box<str>, Arc<ClientEntry>>,
    api_tokens: HashMap<String, Arc<ApiTokenRecord>>,
    tenant_paths: HashMap<String, String>,
    revoked_jtis: HashSet<String>,
    /// (issuer, subject) to the clients that list it.
    federated: HashMap<(String, String), Arc<Vec<String>>>,
    /// Issuer to the tenants that trust it.
    issuers: HashMap<String, Arc<Vec<IssuerTrust>>>,
}

/// A verified token's claims and the kid of the key that verified it: a hit
/// counts only while that key is still in the key set.
struct VerifiedJwt {
    kid: String,
    claims: Arc<AccessClaims>,
}

pub struct Cache {
    clock: Arc<dyn Clock>,
    live: AtomicBool,
    /// When the channel last proved alive (clock ms), `NO_BEAT` before the
    /// first heartbeat of a channel.
    last_beat_ms: AtomicI64,
    generation: AtomicU64,
    maps: RwLock<Maps>,
    verified: RwLock<HashMap<[u8; 32], VerifiedJwt>>,
    /// Client ids recently looked up and not found, with when that stops
    /// counting (clock ms): a flood of made-up ids then costs one query per
    /// id and `UNKNOWN_TTL_MS`, not one per request. Used live or not (the
    /// TTL bounds how stale it can be).
    unknown_clients: Mutex<HashMap<String, i64>>,
}

/// Makes room for one more entry in a map at `capacity` by dropping an
/// arbitrary sixteenth of it: one pass per `capacity / 16` inserts, rather
/// than a scan per insert.
fn make_room<K: Eq + Hash, V>(map: &mut HashMap<K, V>, capacity: usize) {
    if map.len() < capacity {
        return;
    }
    let mut drop = capacity / 16 + 1;
    map.retain(|_, _| {
        if drop == 0 {
            return true;
        }
        drop -= 1;
        false
    });
}

impl Cache {
    pub fn new(clock: Arc<dyn Clock>) -> Cache {
        Cache {
            clock,
            live: AtomicBool::new(false),
            last_beat_ms: AtomicI64::new(NO_BEAT),
            generation: AtomicU64::new(0),
            maps: RwLock::new(Maps::default()),
            verified: RwLock::new(HashMap::new()),
            unknown_clients: Mutex::new(HashMap::new()),
        }
    }

    /// Unix seconds by the cache's clock: what expiry is checked against.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether what the cache holds may be served (and fills stored).
    pub fn is_trusted(&self) -> bool {
        self.live.load(Ordering::Acquire)
            && self
                .clock
                .now_ms()
                .saturating_sub(self.last_beat_ms.load(Ordering::Acquire))
                < HEARTBEAT_GRACE_MS
    }

    /// The channel proved alive: one of its own heartbeats was heard.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.clock.now_ms(), Ordering::Release);
    }

    /// The channel is up: start from an empty cache and the full set of
    /// revoked, unexpired jtis. Not trusted until the first `beat`.
    pub fn go_live(&self, revoked: Vec<String>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        {
            let mut maps = self.write();
            *maps = Maps::default();
            maps.revoked_jtis = revoked.into_iter().collect();
        }
        self.last_beat_ms.store(NO_BEAT, Ordering::Release);
        self.live.store(true, Ordering::Release);
    }

    /// The channel is down (events may be lost from now on): forget
    /// everything it kept fresh. Answers whether it was live.
    pub fn go_dark(&self) -> bool {
        let was_live = self.live.swap(false, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.write() = Maps::default();
        was_live
    }

    /// Applies one change (from this process or from the channel). Keys
    /// are the key ring's business: the directory reloads them.
    pub fn apply(&self, change: &Change) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Client(id) => {
                self.unknown().remove(id);
                let mut maps = self.write();
                maps.federated.clear();
                maps.clients.remove(id.as_str());
                maps.api_tokens.retain(|_, t| *t.owner.client_id != **id);
            }
            Change::Clients(ids) => {
                let ids: std::collections::HashSet<&String> = ids.iter().collect();
                {
                    let mut unknown = self.unknown();
                    for id in &ids {
                        unknown.remove(*id);
                    }
                }
                let mut maps = self.write();
                maps.federated.clear();
                for id in &ids {
                    maps.clients.remove(id.as_str());
                }
                // One pass over the tokens for the whole batch.
                maps.api_tokens
                    .retain(|_, t| !ids.contains(&t.owner.client_id.to_string()));
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
                maps.federated.clear();
                maps.issuers.clear();
            }
            Change::TrustedIssuers => {
                self.write().issuers.clear();
            }
            Change::Keys => {}
            // Sessions are not cached (every request reads its row); a
            // future session cache drops the user's here.
            Change::User(_) => {}
        }
    }

    /// Taken before a fill's database read.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Stores a fill read at generation `seen`, unless an invalidation
    /// happened meanwhile. The check is made under the write lock, and
    /// `apply` bumps the generation before it takes that lock: either the
    /// fill sees the bump, or the invalidation comes after it and drops it.
    fn store(&self, seen: Generation, put: impl FnOnce(&mut Maps)) {
        if !self.is_trusted() {
            return;
        }
        let mut maps = self.write();
        if self.generation.load(Ordering::Acquire) == seen.0 {
            put(&mut maps);
        }
    }

    pub fn client(&self, client_id: &str) -> Option<Arc<ClientEntry>> {
        if !self.is_trusted() {
            return None;
        }
        self.read().clients.get(client_id).cloned()
    }

    pub fn fill_client(&self, seen: Generation, client_id: &str, entry: Arc<ClientEntry>) {
        self.store(seen, |maps| {
            make_room(&mut maps.clients, CLIENT_CAPACITY);
            maps.clients.insert(client_id.into(), entry);
        });
    }

    /// By the SHA-256 (hex) of the token.
    pub fn api_token(&self, hash: &str) -> Option<Arc<ApiTokenRecord>> {
        if !self.is_trusted() {
            return None;
        }
        self.read().api_tokens.get(hash).cloned()
    }

    pub fn fill_api_token(&self, seen: Generation, hash: String, record: Arc<ApiTokenRecord>) {
        self.store(seen, |maps| {
            make_room(&mut maps.api_tokens, API_TOKEN_CAPACITY);
            maps.api_tokens.insert(hash, record);
        });
    }

    /// Whether the jti is revoked; None when the cache cannot say (not
    /// trusted: ask the database).
    pub fn jti_revoked(&self, jti: &str) -> Option<bool> {
        if !self.is_trusted() {
            return None;
        }
        Some(self.read().revoked_jtis.contains(jti))
    }

    pub fn tenant_path(&self, tenant_id: &str) -> Option<String> {
        if !self.is_trusted() {
            return None;
        }
        self.read().tenant_paths.get(tenant_id).cloned()
    }

    pub fn fill_tenant_path(&self, seen: Generation, tenant_id: &str, path: String) {
        self.store(seen, |maps| {
            make_room(&mut maps.tenant_paths, TENANT_PATH_CAPACITY);
            maps.tenant_paths.insert(tenant_id.to_string(), path);
        });
    }

    /// The clients that list (issuer, subject).
    pub fn federated(&self, issuer: &str, subject: &str) -> Option<Arc<Vec<String>>> {
        if !self.is_trusted() {
            return None;
        }
        self.read()
            .federated
            .get(&(issuer.to_string(), subject.to_string()))
            .cloned()
    }

    pub fn fill_federated(
        &self,
        seen: Generation,
        issuer: &str,
        subject: &str,
        clients: Arc<Vec<String>>,
    ) {
        self.store(seen, |maps| {
            make_room(&mut maps.federated, FEDERATED_CAPACITY);
            maps.federated
                .insert((issuer.to_string(), subject.to_string()), clients);
        });
    }

    /// The tenants that trust `issuer`.
    pub fn issuer_trust(&self, issuer: &str) -> Option<Arc<Vec<IssuerTrust>>> {
        if !self.is_trusted() {
            return None;
        }
        self.read().issuers.get(issuer).cloned()
    }

    pub fn fill_issuer_trust(&self, seen: Generation, issuer: &str, trust: Arc<Vec<IssuerTrust>>) {
        self.store(seen, |maps| {
            make_room(&mut maps.issuers, FEDERATED_CAPACITY);
            maps.issuers.insert(issuer.to_string(), trust);
        });
    }

    fn unknown(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.unknown_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `client_id` was looked up and not found within the TTL.
    pub fn is_known_unknown(&self, client_id: &str) -> bool {
        let now = self.clock.now_ms();
        let mut unknown = self.unknown();
        match unknown.get(client_id) {
            Some(until) if *until > now => true,
            Some(_) => {
                unknown.remove(client_id);
                false
            }
            None => false,
        }
    }

    pub fn remember_unknown(&self, client_id: &str) {
        if client_id.len() > UNKNOWN_MAX_ID_LEN {
            return;
        }
        let now = self.clock.now_ms();
        let mut unknown = self.unknown();
        if unknown.len() >= UNKNOWN_CAPACITY {
            unknown.retain(|_, until| *until > now);
            if unknown.len() >= UNKNOWN_CAPACITY {
                // Full of live entries: a flood. Start over rather than grow.
                unknown.clear();
            }
        }
        unknown.insert(client_id.to_string(), now.saturating_add(UNKNOWN_TTL_MS));
    }

    /// What a past signature check of the token keyed `key` says now:
    /// valid while unexpired and while `published(kid)` holds for the key
    /// that verified it.
    pub fn verified(&self, key: &[u8; 32], published: impl Fn(&str) -> bool) -> Remembered {
        let now = self.clock.now();
        let Ok(cache) = self.verified.read() else {
            return Remembered::Unknown;
        };
        match cache.get(key) {
            None => Remembered::Unknown,
            Some(hit) if hit.claims.exp > now && published(&hit.kid) => {
                Remembered::Valid(hit.claims.clone())
            }
            Some(_) => Remembered::Refused,
        }
    }

    /// Remembers a good signature check (until the token's `exp`).
    pub fn remember_verified(&self, key: [u8; 32], kid: String, claims: Arc<AccessClaims>) {
        let now = self.clock.now();
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= VERIFIED_CAPACITY {
                cache.retain(|_, c| c.claims.exp > now);
                if cache.len() >= VERIFIED_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, VerifiedJwt { kid, claims });
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize, usize, usize) {
        let maps = self.read();
        (
            maps.clients.len(),
            maps.api_tokens.len(),
            maps.tenant_paths.len(),
            self.verified.read().map(|v| v.len()).unwrap_or(0),
            self.unknown().len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::directory::entry::Shared;
    use crate::domain::Client;
    use crate::service::credentials::ClientRecord;
    use crate::service::scopes::ScopeSet;
    use crate::store::models::{self, ApiTokenRow};
    use crate::tokens::jwt::Audience;

    const START_MS: i64 = 1_800_000_000_000;

    fn client_record(id: &str, expires_at: Option<i64>) -> ClientRecord {
        ClientRecord {
            client: Client::try_from(models::Client {
                expires_at,
                ..crate::directory::entry::client_row(id)
            })
            .expect("a well-formed row"),
            tenant_path: "/t/".into(),
        }
    }

    fn entry(id: &str, expires_at: Option<i64>) -> Arc<ClientEntry> {
        Arc::new(ClientEntry::new(
            client_record(id, expires_at),
            Vec::new(),
            Arc::new(ScopeSet::default()),
            &Shared::new(),
        ))
    }

    fn api_token(owner: &str) -> Arc<ApiTokenRecord> {
        Arc::new(ApiTokenRecord {
            token: ApiTokenRow {
                id: format!("tok-{owner}"),
                client_id: owner.into(),
                token_hash: String::new(),
                prefix: String::new(),
                scope: String::new(),
                audience: "[]".into(),
                tenant_id: "t".into(),
                issued_at: 0,
                expires_at: i64::MAX,
                revoked_at: None,
            },
            owner: entry(owner, None),
        })
    }

    fn claims(exp: i64) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "https://kw.test".into(),
            sub: "c".into(),
            client_id: "c".into(),
            aud: Audience::One("https://kw.test".into()),
            iat: 0,
            exp,
            jti: "j".into(),
            scope: String::new(),
            role: "reader".into(),
            tenant: "t".into(),
            device_group: None,
        })
    }

    /// A cache whose channel is up and has been heard, at START_MS.
    fn live_cache() -> (Cache, Arc<ManualClock>) {
        let clock = ManualClock::at_ms(START_MS);
        let cache = Cache::new(clock.clone());
        cache.go_live(Vec::new());
        cache.beat();
        (cache, clock)
    }

    #[test]
    fn a_fill_stores_what_the_database_said() {
        let (cache, _) = live_cache();
        let seen = cache.generation();
        cache.fill_client(seen, "c1", entry("c1", None));
        assert!(cache.client("c1").is_some());
        assert!(cache.client("c2").is_none());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_stored() {
        let (cache, _) = live_cache();
        for change in [
            Change::Client("c1".into()),
            Change::Client("someone-else".into()),
            Change::ApiToken("h".into()),
            Change::Jti("j".into()),
            Change::Tenants,
            Change::Keys,
        ] {
            // The fill read the database, then the change was applied,
            // then the fill came back with what it read before the change.
            let seen = cache.generation();
            cache.apply(&change);
            cache.fill_client(seen, "c1", entry("c1", None));
            cache.fill_api_token(seen, "h".into(), api_token("c1"));
            cache.fill_tenant_path(seen, "t", "/t/".into());
            assert!(cache.client("c1").is_none(), "{change:?}");
            assert!(cache.api_token("h").is_none(), "{change:?}");
            assert!(cache.tenant_path("t").is_none(), "{change:?}");
        }
    }

    #[test]
    fn a_fill_that_raced_the_channel_going_down_and_up_is_not_stored() {
        let (cache, _) = live_cache();
        let seen = cache.generation();
        assert!(cache.go_dark());
        cache.go_live(Vec::new());
        cache.beat();
        cache.fill_client(seen, "c1", entry("c1", None));
        assert!(cache.client("c1").is_none());
    }

    #[test]
    fn an_invalidation_of_a_client_drops_it_and_its_api_tokens_only() {
        let (cache, _) = live_cache();
        let seen = cache.generation();
        cache.fill_client(seen, "c1", entry("c1", None));
        cache.fill_client(seen, "c2", entry("c2", None));
        cache.fill_api_token(seen, "h1".into(), api_token("c1"));
        cache.fill_api_token(seen, "h2".into(), api_token("c2"));
        cache.apply(&Change::Client("c1".into()));
        assert!(cache.client("c1").is_none());
        assert!(cache.api_token("h1").is_none());
        assert!(cache.client("c2").is_some());
        assert!(cache.api_token("h2").is_some());
    }

    #[test]
    fn a_tenant_change_drops_clients_tokens_and_paths_but_not_revocations() {
        let (cache, _) = live_cache();
        let seen = cache.generation();
        cache.fill_client(seen, "c1", entry("c1", None));
        cache.fill_api_token(seen, "h1".into(), api_token("c1"));
        cache.fill_tenant_path(seen, "t", "/t/".into());
        cache.apply(&Change::Jti("j1".into()));
        cache.apply(&Change::Tenants);
        assert!(cache.client("c1").is_none());
        assert!(cache.api_token("h1").is_none());
        assert!(cache.tenant_path("t").is_none());
        assert_eq!(cache.jti_revoked("j1"), Some(true));
        assert_eq!(cache.jti_revoked("j2"), Some(false));
    }

    #[test]
    fn expiry_is_checked_at_use_from_the_stored_timestamp() {
        let (cache, clock) = live_cache();
        let expires_at = START_MS / 1000 + 10;
        cache.fill_client(cache.generation(), "c1", entry("c1", Some(expires_at)));
        let cached = cache.client("c1").unwrap();
        assert!(cached.is_usable(cache.now()));
        clock.advance(Duration::from_secs(10));
        cache.beat();
        // Still cached: the entry holds the timestamp, not a verdict.
        let cached = cache.client("c1").unwrap();
        assert!(!cached.is_usable(cache.now()));
    }

    #[test]
    fn the_cache_is_not_trusted_before_the_first_heartbeat_nor_past_the_grace() {
        let clock = ManualClock::at_ms(START_MS);
        let cache = Cache::new(clock.clone());
        assert!(!cache.is_trusted(), "not live yet");
        cache.beat();
        assert!(
            !cache.is_trusted(),
            "a beat without a channel counts for nothing"
        );
        cache.go_live(vec!["j1".into()]);
        assert!(!cache.is_trusted(), "live, but no heartbeat heard yet");
        assert_eq!(cache.jti_revoked("j1"), None, "untrusted: ask the database");
        cache.fill_client(cache.generation(), "c1", entry("c1", None));
        cache.beat();
        assert!(cache.is_trusted());
        assert!(
            cache.client("c1").is_none(),
            "nothing was stored while untrusted"
        );
        assert_eq!(cache.jti_revoked("j1"), Some(true));
        cache.fill_client(cache.generation(), "c1", entry("c1", None));

        clock.advance(Duration::from_millis(HEARTBEAT_GRACE_MS as u64 - 1));
        assert!(cache.is_trusted());
        assert!(cache.client("c1").is_some());
        clock.advance(Duration::from_millis(1));
        assert!(!cache.is_trusted(), "the grace is over");
        assert!(cache.client("c1").is_none());
        assert_eq!(cache.jti_revoked("j1"), None);
        cache.beat();
        assert!(cache.is_trusted(), "a late heartbeat restores trust");
        assert!(cache.client("c1").is_some());

        assert!(cache.go_dark());
        assert!(!cache.is_trusted());
        assert!(!cache.go_dark(), "already dark");
        cache.go_live(Vec::new());
        cache.beat();
        assert!(cache.client("c1").is_none(), "a channel back starts empty");
        assert_eq!(cache.jti_revoked("j1"), Some(false));
    }

    #[test]
    fn unknown_ids_are_remembered_for_their_ttl_or_until_the_client_changes() {
        // Not live: the unknown ids count even without a channel.
        let clock = ManualClock::at_ms(START_MS);
        let cache = Cache::new(clock.clone());
        cache.remember_unknown("ghost");
        assert!(cache.is_known_unknown("ghost"));
        assert!(!cache.is_known_unknown("other"));
        clock.advance(Duration::from_millis(UNKNOWN_TTL_MS as u64 - 1));
        assert!(cache.is_known_unknown("ghost"));
        clock.advance(Duration::from_millis(1));
        assert!(!cache.is_known_unknown("ghost"), "the TTL is over");

        cache.remember_unknown("ghost");
        cache.apply(&Change::Client("ghost".into()));
        assert!(!cache.is_known_unknown("ghost"), "created meanwhile");

        let long = "x".repeat(UNKNOWN_MAX_ID_LEN + 1);
        cache.remember_unknown(&long);
        assert!(!cache.is_known_unknown(&long));
    }

    #[test]
    fn a_verified_jwt_counts_until_its_exp_and_while_its_key_is_published() {
        let (cache, clock) = live_cache();
        let key = token_key("a.b.c");
        let now = START_MS / 1000;
        assert!(matches!(
            cache.verified(&key, |_| true),
            Remembered::Unknown
        ));
        cache.remember_verified(key, "k1".into(), claims(now + 60));
        assert!(matches!(
            cache.verified(&key, |kid| kid == "k1"),
            Remembered::Valid(_)
        ));
        assert!(matches!(
            cache.verified(&key, |kid| kid == "k2"),
            Remembered::Refused
        ));
        clock.advance(Duration::from_secs(60));
        assert!(matches!(
            cache.verified(&key, |_| true),
            Remembered::Refused
        ));
    }

    #[test]
    fn bounded_maps_stay_bounded_under_a_flood() {
        let (cache, _) = live_cache();
        let now = START_MS / 1000;
        for i in 0..UNKNOWN_CAPACITY + 1_000 {
            cache.remember_unknown(&format!("ghost-{i}"));
        }
        for i in 0..VERIFIED_CAPACITY + 1_000 {
            cache.remember_verified(token_key(&i.to_string()), "k".into(), claims(now + 60));
        }
        let entry = entry("c", None);
        let token = api_token("c");
        for i in 0..CLIENT_CAPACITY.max(API_TOKEN_CAPACITY) + 1_000 {
            let seen = cache.generation();
            cache.fill_client(seen, &i.to_string(), entry.clone());
            if i < API_TOKEN_CAPACITY + 1_000 {
                cache.fill_api_token(seen, i.to_string(), token.clone());
            }
            if i < TENANT_PATH_CAPACITY + 1_000 {
                cache.fill_tenant_path(seen, &i.to_string(), String::new());
            }
        }
        let (clients, api_tokens, tenant_paths, verified, unknown) = cache.sizes();
        assert!(clients <= CLIENT_CAPACITY && clients > CLIENT_CAPACITY / 2);
        assert!(api_tokens <= API_TOKEN_CAPACITY && api_tokens > API_TOKEN_CAPACITY / 2);
        assert!(tenant_paths <= TENANT_PATH_CAPACITY && tenant_paths > TENANT_PATH_CAPACITY / 2);
        assert!(verified <= VERIFIED_CAPACITY, "{verified}");
        assert!(unknown <= UNKNOWN_CAPACITY, "{unknown}");
        // The latest entries are kept.
        assert!(cache.client(&(CLIENT_CAPACITY + 999).to_string()).is_some());
        assert!(cache
            .api_token(&(API_TOKEN_CAPACITY + 999).to_string())
            .is_some());
        assert!(cache.is_known_unknown(&format!("ghost-{}", UNKNOWN_CAPACITY + 999)));
    }

    #[test]
    fn full_maps_of_expired_entries_make_room_without_forgetting_live_ones() {
        let (cache, clock) = live_cache();
        let now = START_MS / 1000;
        for i in 0..UNKNOWN_CAPACITY - 1 {
            cache.remember_unknown(&format!("old-{i}"));
        }
        for i in 0..VERIFIED_CAPACITY - 1 {
            cache.remember_verified(token_key(&format!("old-{i}")), "k".into(), claims(now + 1));
        }
        clock.advance(Duration::from_millis(UNKNOWN_TTL_MS as u64));
        cache.remember_unknown("fresh");
        cache.remember_verified(token_key("fresh"), "k".into(), claims(now + 60));
        // At capacity now: the next insert drops the expired, keeps the live.
        cache.remember_unknown("newest");
        cache.remember_verified(token_key("newest"), "k".into(), claims(now + 60));
        let (_, _, _, verified, unknown) = cache.sizes();
        assert_eq!((verified, unknown), (2, 2));
        assert!(cache.is_known_unknown("fresh"));
        assert!(matches!(
            cache.verified(&token_key("fresh"), |_| true),
            Remembered::Valid(_)
        ));
    }

    #[test]
    fn federated_lookups_are_dropped_by_client_and_issuer_changes() {
        let (cache, _) = live_cache();
        let trust = Arc::new(vec![IssuerTrust {
            id: "iss_1".into(),
            tenant_path: "/t/".into(),
            jwks_uri: None,
        }]);
        let fill = |cache: &Cache| {
            cache.fill_federated(
                cache.generation(),
                "https://i",
                "s",
                Arc::new(vec!["c1".into()]),
            );
            cache.fill_issuer_trust(cache.generation(), "https://i", trust.clone());
        };
        fill(&cache);
        assert_eq!(
            cache.federated("https://i", "s").unwrap().as_slice(),
            ["c1"]
        );
        assert_eq!(cache.issuer_trust("https://i").unwrap(), trust);
        // A client's subjects may have changed: every (issuer, subject) goes.
        cache.apply(&Change::Client("c2".into()));
        assert!(cache.federated("https://i", "s").is_none());
        assert!(cache.issuer_trust("https://i").is_some());
        cache.apply(&Change::TrustedIssuers);
        assert!(cache.issuer_trust("https://i").is_none());
        fill(&cache);
        cache.apply(&Change::Tenants);
        assert!(cache.federated("https://i", "s").is_none());
        assert!(cache.issuer_trust("https://i").is_none());
        // A fill that raced an invalidation is not stored.
        let seen = cache.generation();
        cache.apply(&Change::TrustedIssuers);
        cache.fill_issuer_trust(seen, "https://i", trust.clone());
        assert!(cache.issuer_trust("https://i").is_none());
    }
}

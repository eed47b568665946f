//! Remote key sets, cached per source (a `jwks_uri`, or an issuer's
//! discovery document), per node. API.md section 3, "Trusted issuers":
//! - a set is used without refetching for `FRESH` after a fetch;
//! - an unknown `kid`, or a stale set, leads to a refetch, at most once per
//!   `MIN_REFETCH` per source, however many requests ask (a flood of
//!   assertions with made-up kids cannot make keyward flood the issuer);
//! - a failed fetch keeps the set it had, until `KEEP` after its last good
//!   fetch; past that, or with nothing fetched yet, the keys are
//!   unavailable and the caller answers 503 `temporarily_unavailable`.
//! - the fetch at registration fills the cache without counting toward the
//!   once-a-minute limit.
//!
//! Concurrent requests for a source that needs fetching wait for one fetch
//! (a lock per source, held on a blocking thread) instead of each fetching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;

use super::fetch::{FetchError, KeyFetcher};
use crate::clock::Clock;

/// A set is used as is this long after it was fetched.
pub const FRESH: i64 = 300;
/// At most one refetch per source in this many seconds.
pub const MIN_REFETCH: i64 = 60;
/// A set outlives failed refetches this long after its last good fetch.
pub const KEEP: i64 = 3600;
/// Sources remembered at most; past it, the least recently fetched go.
const CAPACITY: usize = 10_000;

/// Where a set of keys comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWK Set URL (a client's, or a trusted issuer's).
    JwksUri(String),
    /// An issuer whose discovery document names its `jwks_uri`.
    Discovery(String),
}

impl KeySource {
    /// A trusted issuer's keys: its `jwks_uri`, or else its discovery.
    pub fn for_issuer(issuer: &str, jwks_uri: Option<&str>) -> KeySource {
        match jwks_uri {
            Some(uri) => KeySource::JwksUri(uri.to_string()),
            None => KeySource::Discovery(issuer.to_string()),
        }
    }
}

#[derive(Default)]
struct Entry {
    keys: Option<Arc<JwkSet>>,
    fetched_at: i64,
    attempted_at: Option<i64>,
}

enum Decision {
    Use(Arc<JwkSet>),
    Fetch,
    Fail(String),
}

impl Entry {
    /// The set kept through a failed or skipped refetch (an unknown kid
    /// then fails verification, `invalid_client`), until `KEEP` after its
    /// last good fetch.
    fn kept(&self, now: i64) -> Decision {
        match &self.keys {
            Some(keys) if now - self.fetched_at < KEEP => Decision::Use(keys.clone()),
            _ => Decision::Fail(
                "the keys could not be fetched; the next try is within a minute".into(),
            ),
        }
    }
}

/// The keys could not be had: none cached, and none fetched.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the signing keys could not be fetched: {0}")]
pub struct KeysUnavailable(pub String);

pub struct KeyCache {
    fetcher: Arc<KeyFetcher>,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<KeySource, Entry>>,
    /// One fetch at a time per source.
    gates: Mutex<HashMap<KeySource, Arc<Mutex<()>>>>,
}

impl KeyCache {
    pub fn new(fetcher: Arc<KeyFetcher>, clock: Arc<dyn Clock>) -> Arc<KeyCache> {
        Arc::new(KeyCache {
            fetcher,
            clock,
            entries: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
        })
    }

    pub fn fetcher(&self) -> &Arc<KeyFetcher> {
        &self.fetcher
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<KeySource, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do for `kid` at `now`, from what is cached.
    fn decide(&self, source: &KeySource, kid: Option<&str>, now: i64) -> Decision {
        let entries = self.entries();
        let Some(entry) = entries.get(source) else {
            return Decision::Fetch;
        };
        if let Some(keys) = &entry.keys {
            let fresh = now - entry.fetched_at < FRESH;
            let knows_kid = kid.is_none_or(|kid| keys.find(kid).is_some());
            if fresh && knows_kid {
                return Decision::Use(keys.clone());
            }
        }
        if entry.attempted_at.is_none_or(|at| now - at >= MIN_REFETCH) {
            return Decision::Fetch;
        }
        entry.kept(now)
    }

    /// The keys to verify an assertion with `kid`. Blocking: it may fetch.
    pub fn keys_blocking(
        &self,
        source: &KeySource,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, KeysUnavailable> {
        match self.decide(source, kid, self.clock.now()) {
            Decision::Use(keys) => return Ok(keys),
            Decision::Fail(why) => return Err(KeysUnavailable(why)),
            Decision::Fetch => {}
        }
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            gates.entry(source.clone()).or_default().clone()
        };
        let _one_at_a_time = gate.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have fetched while this one waited.
        let now = self.clock.now();
        match self.decide(source, kid, now) {
            Decision::Use(keys) => return Ok(keys),
            Decision::Fail(why) => return Err(KeysUnavailable(why)),
            Decision::Fetch => {}
        }
        self.entries()
            .entry(source.clone())
            .or_default()
            .attempted_at = Some(now);
        match self.fetch(source) {
            Ok(keys) => {
                let keys = Arc::new(keys);
                self.store(source, keys.clone(), now, true);
                Ok(keys)
            }
            Err(e) => {
                log::warn!("keys from {source:?} not fetched: {e}");
                let kept = self.entries().get(source).map(|entry| entry.kept(now));
                match kept {
                    Some(Decision::Use(keys)) => Ok(keys),
                    _ => Err(KeysUnavailable(e.0)),
                }
            }
        }
    }

    /// The keys, from an async handler. A fetch runs on a thread of its
    /// own: the blocking pool is the database's, and a slow issuer must not
    /// hold it.
    pub async fn keys(
        self: &Arc<Self>,
        source: &KeySource,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, KeysUnavailable> {
        match self.decide(source, kid, self.clock.now()) {
            Decision::Use(keys) => return Ok(keys),
            Decision::Fail(why) => return Err(KeysUnavailable(why)),
            Decision::Fetch => {}
        }
        let me = self.clone();
        let (source, kid) = (source.clone(), kid.map(str::to_string));
        super::off_thread(move || me.keys_blocking(&source, kid.as_deref()))
            .await
            .unwrap_or_else(|| Err(KeysUnavailable("the fetch did not finish".into())))
    }

    /// Fetches the set for `source` now, without counting toward the
    /// refetch limit, and caches it: the check made at registration.
    pub fn fetch_for_registration(&self, source: &KeySource) -> Result<Arc<JwkSet>, FetchError> {
        let keys = Arc::new(self.fetch(source)?);
        self.store(source, keys.clone(), self.clock.now(), false);
        Ok(keys)
    }

    fn fetch(&self, source: &KeySource) -> Result<JwkSet, FetchError> {
        match source {
            KeySource::JwksUri(uri) => self.fetcher.jwks(uri),
            KeySource::Discovery(issuer) => {
                let uri = self.fetcher.discover_jwks_uri(issuer)?;
                self.fetcher.jwks(&uri)
            }
        }
    }

    fn store(&self, source: &KeySource, keys: Arc<JwkSet>, now: i64, counted: bool) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY && !entries.contains_key(source) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.fetched_at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(source.clone()).or_default();
        entry.keys = Some(keys);
        entry.fetched_at = now;
        if counted {
            entry.attempted_at = Some(now);
        }
    }
}

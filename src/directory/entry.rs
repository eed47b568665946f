//! A client as the hot paths need it (authentication, token issuance,
//! introspection, renewal, revocation), in a compact form: a node keeps
//! every client it serves in memory, a million and more, so each byte here
//! counts a million times.
//!
//! What is kept, and how:
//! - the fields those paths read, and nothing else. What only the admin API
//!   shows (name, description, owner, metadata, timestamps, version,
//!   federated subjects) it reads from the store, as it does for everything.
//! - tenant, role and device group as one `Standing`, allocated once for
//!   every client that has the same three; allowed networks and audiences
//!   likewise, and absent when empty; scope sets through
//!   `Directory::scope_set`.
//! - kind, status and authentication method as one-byte enums.
//! - secrets as their SHA-256 digests (32 bytes rather than 64 characters
//!   of hex), compared in constant time, without their rows' ids.
//!
//! About 300 bytes per client, its slot and key in the cache's map included
//! (`cargo bench --bench directory_memory`; the README's "Memory per
//! client"). The same form is an API token's owner, and what a `Principal`
//! carries.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;

use crate::domain::{AllowedNetworks, Audience, AuthMethod, ClientKind, ClientStatus, ShownStatus};
use crate::service::credentials::ClientRecord;
use crate::service::scopes::ScopeSet;
use crate::store::models::ClientSecret;
use crate::tokens::opaque;

/// Distinct standings remembered for sharing, at most; past it the
/// remembered ones are forgotten and sharing starts over (entries keep
/// what they hold). A fleet has few: a tenant's clients mostly share one.
pub const STANDINGS_CAPACITY: usize = 100_000;
/// Distinct allowed-network lists and audience lists, each.
pub const LISTS_CAPACITY: usize = 10_000;

/// A client, compact (see the module's comment).
#[derive(Debug)]
pub struct ClientEntry {
    pub client_id: Box<str>,
    pub kind: ClientKind,
    pub status: ClientStatus,
    pub auth_method: AuthMethod,
    pub can_renew: bool,
    pub expires_at: Option<i64>,
    pub access_token_ttl: i64,
    standing: Arc<Standing>,
    /// The client's scopes, shared with every client that has the same.
    pub scopes: Arc<ScopeSet>,
    /// None: any address.
    allowed_ips: Option<Arc<AllowedNetworks>>,
    /// None: the issuer alone.
    audience: Option<Arc<Audience>>,
    /// The current secret and those still in their grace.
    secrets: Box<[SecretDigest]>,
    /// Its registered public keys (`jwks`), for `private_key_jwt`.
    pub assertion_keys: Option<Arc<JwkSet>>,
    /// Or where it publishes them.
    pub jwks_uri: Option<Box<str>>,
}

/// Where a client stands: its tenant, role and device group. Most clients
/// share theirs with many others.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Standing {
    tenant_id: Box<str>,
    tenant_path: Box<str>,
    role: Box<str>,
    device_group_id: Option<Box<str>>,
}

/// A stored secret hash, as bytes.
struct SecretDigest {
    digest: [u8; 32],
    expires_at: Option<i64>,
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDigest")
            .field("digest", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl ClientEntry {
    /// The entry for a client as read, with `secrets` (none for an API
    /// token's owner) and its scopes as `Directory::scope_set` shares them.
    pub fn new(
        record: ClientRecord,
        secrets: Vec<ClientSecret>,
        scopes: Arc<ScopeSet>,
        shared: &Shared,
    ) -> ClientEntry {
        let client = record.client;
        let standing = shared.standings.share(Standing {
            tenant_id: client.tenant_id.as_str().into(),
            tenant_path: record.tenant_path.into(),
            role: client.role.into(),
            device_group_id: client.device_group_id.map(String::into_boxed_str),
        });
        let allowed_ips =
            (!client.allowed_ips.is_empty()).then(|| shared.networks.share(client.allowed_ips));
        let audience =
            (!client.audience.is_empty()).then(|| shared.audiences.share(client.audience));
        // A stored hash that is not lower-case hex never matched a presented
        // secret's (`sha256_hex` writes lower case), so it is left out.
        let secrets = secrets
            .iter()
            .filter_map(|s| {
                Some(SecretDigest {
                    digest: opaque::digest_from_hex(&s.secret_hash)?,
                    expires_at: s.expires_at,
                })
            })
            .collect();
        ClientEntry {
            client_id: client.client_id.as_str().into(),
            kind: client.kind,
            status: client.status,
            auth_method: client.auth_method,
            can_renew: client.can_renew,
            expires_at: client.expires_at,
            access_token_ttl: client.access_token_ttl,
            standing,
            scopes,
            allowed_ips,
            audience,
            secrets,
            assertion_keys: client.jwks.map(|keys| Arc::new(keys.0)),
            jwks_uri: client.jwks_uri.map(String::into_boxed_str),
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.standing.tenant_id
    }

    pub fn tenant_path(&self) -> &str {
        &self.standing.tenant_path
    }

    pub fn role(&self) -> &str {
        &self.standing.role
    }

    pub fn device_group_id(&self) -> Option<&str> {
        self.standing.device_group_id.as_deref()
    }

    /// The status a caller sees at `now` (`expired` derived), by the one
    /// rule of `ClientStatus::shown`.
    pub fn shown_status(&self, now: i64) -> ShownStatus {
        self.status.shown(self.expires_at, now)
    }

    /// Whether the client's credentials and tokens work at `now`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.shown_status(now) == ShownStatus::Active
    }

    /// Whether `ip` may use this client (no networks: any address).
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        self.allowed_ips
            .as_ref()
            .is_none_or(|networks| networks.allows(ip))
    }

    /// The audiences the client may ask for besides the issuer.
    pub fn audience(&self) -> &[String] {
        self.audience.as_deref().map_or(&[], Audience::as_slice)
    }

    /// Whether `presented` is one of the client's live secrets. Every
    /// candidate is compared, in constant time, so timing says nothing about
    /// which matched.
    pub fn secret_matches(&self, presented: &str, now: i64) -> bool {
        let presented = opaque::sha256(presented.as_bytes());
        let mut matched = false;
        for secret in &self.secrets {
            let live = secret.expires_at.is_none_or(|until| now < until);
            matched |= opaque::digests_equal(&secret.digest, &presented) && live;
        }
        matched
    }
}

/// The values entries share, each allocated once per distinct value.
pub struct Shared {
    standings: Interner<Standing>,
    networks: Interner<AllowedNetworks>,
    audiences: Interner<Audience>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            standings: Interner::new(STANDINGS_CAPACITY),
            networks: Interner::new(LISTS_CAPACITY),
            audiences: Interner::new(LISTS_CAPACITY),
        }
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new()
    }
}

/// Hands out one `Arc` per distinct value. Bounded: when full it forgets
/// what it remembered and starts over, which costs only sharing (the
/// entries that hold a value keep it).
struct Interner<T: ?Sized> {
    values: Mutex<HashSet<Arc<T>>>,
    capacity: usize,
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    fn new(capacity: usize) -> Interner<T> {
        Interner {
            values: Mutex::new(HashSet::new()),
            capacity,
        }
    }

    fn share<V: Borrow<T> + Into<Arc<T>>>(&self, value: V) -> Arc<T> {
        let Ok(mut values) = self.values.lock() else {
            return value.into();
        };
        if let Some(shared) = values.get(value.borrow()) {
            return shared.clone();
        }
        if values.len() >= self.capacity {
            values.clear();
        }
        let shared: Arc<T> = value.into();
        values.insert(shared.clone());
        shared
    }
}

/// A stored client row as `keyward client create --role reader` makes it,
/// for the directory's tests to vary with struct update syntax.
#[cfg(test)]
pub(crate) fn client_row(id: &str) -> crate::store::models::Client {
    crate::store::models::Client {
        client_id: id.into(),
        kind: "client_credentials".into(),
        name: "n".into(),
        description: None,
        tenant_id: "t".into(),
        role: "reader".into(),
        scopes: String::new(),
        device_group_id: None,
        owner: None,
        owner_email: None,
        status: "active".into(),
        expires_at: None,
        can_renew: false,
        allowed_ips: "[]".into(),
        access_token_ttl: 300,
        token_lifetime: 3600,
        audience: "[]".into(),
        metadata: "{}".into(),
        created_at: 0,
        updated_at: 0,
        revoked_at: None,
        last_used_at: None,
        version: 1,
        user_id: None,
        token_endpoint_auth_method: "client_secret_basic".into(),
        jwks: None,
        jwks_uri: None,
        federated_subjects: "[]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Client;
    use crate::store::models;

    fn record(id: &str, allowed_ips: &str, audience: &str) -> ClientRecord {
        ClientRecord {
            client: Client::try_from(models::Client {
                tenant_id: "tn_a".into(),
                scopes: "read".into(),
                allowed_ips: allowed_ips.into(),
                audience: audience.into(),
                ..client_row(id)
            })
            .expect("a well-formed row"),
            tenant_path: "/tn_a/".into(),
        }
    }

    fn secret(value: &str, expires_at: Option<i64>) -> ClientSecret {
        ClientSecret {
            id: "sec_1".into(),
            client_id: "kwc_1".into(),
            secret_hash: opaque::sha256_hex(value.as_bytes()),
            created_at: 0,
            expires_at,
        }
    }

    fn entry(id: &str, allowed_ips: &str, audience: &str, shared: &Shared) -> ClientEntry {
        ClientEntry::new(
            record(id, allowed_ips, audience),
            Vec::new(),
            Arc::new(ScopeSet::default()),
            shared,
        )
    }

    #[test]
    fn clients_alike_share_one_standing_and_one_of_each_list() {
        let shared = Shared::new();
        let lists = (r#"["10.0.0.0/8"]"#, r#"["https://api.example"]"#);
        let a = entry("kwc_a", lists.0, lists.1, &shared);
        let b = entry("kwc_b", lists.0, lists.1, &shared);
        assert!(Arc::ptr_eq(&a.standing, &b.standing));
        let (Some(a_ips), Some(b_ips)) = (&a.allowed_ips, &b.allowed_ips) else {
            panic!("both list networks");
        };
        assert!(Arc::ptr_eq(a_ips, b_ips));
        assert_eq!(a.audience(), ["https://api.example"]);
        assert_eq!(
            (a.tenant_id(), a.tenant_path(), a.role()),
            ("tn_a", "/tn_a/", "reader")
        );
        let plain = entry("kwc_c", "[]", "[]", &shared);
        assert!(plain.allowed_ips.is_none() && plain.audience.is_none());
        assert!(plain.allows(None), "no networks: any address, even unknown");
        assert!(a.allows(Some("10.1.2.3".parse().unwrap())));
        assert!(!a.allows(Some("192.0.2.1".parse().unwrap())));
        assert!(!a.allows(None));
        assert!(plain.audience().is_empty());
    }

    #[test]
    fn an_interner_past_its_capacity_starts_over_and_keeps_handing_out_equal_values() {
        let names: Interner<str> = Interner::new(2);
        let first = names.share("a");
        assert!(Arc::ptr_eq(&first, &names.share("a")));
        names.share("b");
        let after = names.share("c");
        assert_eq!(&*after, "c");
        assert_eq!(names.values.lock().unwrap().len(), 1);
        assert_eq!(&*names.share("a"), "a");
    }

    #[test]
    fn only_live_secrets_match_and_unreadable_hashes_never_do() {
        let mut unreadable = secret("s3", None);
        unreadable.secret_hash = unreadable.secret_hash.to_uppercase();
        let entry = ClientEntry::new(
            record("kwc_a", "[]", "[]"),
            vec![secret("s1", None), secret("s2", Some(100)), unreadable],
            Arc::new(ScopeSet::default()),
            &Shared::new(),
        );
        assert!(entry.secret_matches("s1", 1_000));
        assert!(entry.secret_matches("s2", 99));
        assert!(!entry.secret_matches("s2", 100), "past its grace");
        assert!(!entry.secret_matches("s3", 0));
        assert!(!entry.secret_matches("", 0));
        assert!(!format!("{entry:?}").contains(&opaque::sha256_hex(b"s1")));
    }
}

//! The stored rows in typed form. `store::models` keeps ids, kinds and
//! statuses as strings and lists as JSON text, because that is what the
//! columns hold; code that re-parsed them at each use defaulted differently
//! at each site (an unreadable `allowed_ips` allowed nobody in the directory
//! but showed as "any address" in the admin API). Here each row is parsed
//! once, in `TryFrom<models::Client>` and `TryFrom<models::Tenant>`, and a
//! value that cannot be read is a [`CorruptField`], never a default.
//!
//! Parsing checks the shape a row must have to be used safely, not the
//! admin API's input rules (lengths, email syntax): those may tighten over
//! time, and a row written under older rules must still load.

use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::service::scopes::ScopeSet;
use crate::store::models;

/// Table names as `CorruptField` reports them.
const CLIENTS: &str = "clients";
const TENANTS: &str = "tenants";
const USERS: &str = "users";

/// A stored value that cannot be read. It names the row and column so an
/// operator can find and repair it; the reason says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptField {
    pub table: &'static str,
    pub id: String,
    pub field: &'static str,
    pub reason: String,
}

impl CorruptField {
    pub fn new(
        table: &'static str,
        id: impl Into<String>,
        field: &'static str,
        reason: impl fmt::Display,
    ) -> CorruptField {
        CorruptField {
            table,
            id: id.into(),
            field,
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for CorruptField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stored {}.{} of {} is unreadable: {}",
            self.table, self.field, self.id, self.reason
        )
    }
}

impl std::error::Error for CorruptField {}

/// A corrupt row fails the query that read it, like any unreadable value
/// (the caller gets a 500 and the log names the row and column).
impl From<CorruptField> for diesel::result::Error {
    fn from(e: CorruptField) -> Self {
        diesel::result::Error::DeserializationError(Box::new(e))
    }
}

/// Ids are opaque strings the store issued (`kwc_...`, `tn_...`). A newtype
/// keeps a client id from being passed where a tenant id belongs; nothing
/// is validated, since every id here came out of the store.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// An id reads as the string it is wherever a `&str` is taken (the
        /// store's queries, log lines); only its construction is typed.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// Lets maps keyed by the id be looked up with a plain `&str`; the
        /// derived Hash, Eq and Ord are those of the string, as Borrow needs.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A client's id (`kwc_...`), also its OAuth `client_id`.
    ClientId
);
string_id!(
    /// A tenant's id (`tn_...`), one segment of a [`TenantPath`].
    TenantId
);
string_id!(
    /// A user's id (`usr_...`).
    UserId
);

/// A kind, status or other closed set of strings that is not one of its
/// values. It names the value, so a bad row or request says what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was parsed, as a message names it: "client kind".
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is not one of {}",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// A closed set of snake_case strings: the enum, its `as_str`, `FromStr`
/// (with an error naming the value), Display and the serde form, all from
/// one table so they cannot disagree.
macro_rules! string_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            const NAMES: &'static [&'static str] = &[$($text,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(value: &str) -> Result<Self, UnknownValue> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: value.to_string(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// How a client authenticates: a secret at the token endpoint, or a
    /// long-lived API token string. Fixed at creation.
    ClientKind, "client kind" {
        ClientCredentials => "client_credentials",
        ApiToken => "api_token",
    }
);

string_enum!(
    /// The status as stored. `expired` is not among them: it follows from
    /// `expires_at` and the time of asking (see [`ClientStatus::shown`]).
    ClientStatus, "client status" {
        Active => "active",
        Disabled => "disabled",
        /// Final: nothing changes a revoked client back.
        Revoked => "revoked",
    }
);

string_enum!(
    /// The status a caller sees: the stored one, or `expired` once
    /// `expires_at` has passed.
    ShownStatus, "status" {
        Active => "active",
        Disabled => "disabled",
        Revoked => "revoked",
        Expired => "expired",
    }
);

string_enum!(
    /// How a client authenticates at the token endpoint, introspection and
    /// revocation (API.md section 2). Either secret method accepts the
    /// other; `private_key_jwt` has no secret at all.
    AuthMethod, "token_endpoint_auth_method" {
        ClientSecretBasic => "client_secret_basic",
        ClientSecretPost => "client_secret_post",
        PrivateKeyJwt => "private_key_jwt",
    }
);

impl AuthMethod {
    pub fn uses_secret(self) -> bool {
        self != AuthMethod::PrivateKeyJwt
    }
}

/// An external workload identity a client answers to: the assertion's
/// `iss` and `sub`, matched exactly.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct FederatedSubject {
    pub issuer: String,
    pub subject: String,
}

/// A client's federated subjects, as stored (JSON) and shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FederatedSubjects(pub Vec<FederatedSubject>);

impl FederatedSubjects {
    pub fn from_json(text: &str) -> Result<FederatedSubjects, String> {
        serde_json::from_str(text)
            .map(FederatedSubjects)
            .map_err(unreadable_json)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A client's registered public keys (a JWK Set), parsed. Stored as the
/// parsed set re-serialised, so nothing but the public parameters is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeys(pub jsonwebtoken::jwk::JwkSet);

impl ClientKeys {
    pub fn from_json(text: &str) -> Result<ClientKeys, String> {
        serde_json::from_str(text)
            .map(ClientKeys)
            .map_err(unreadable_json)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| r#"{"keys":[]}"#.into())
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl ClientStatus {
    /// The status shown at `now`: revoked stays revoked (revocation is final
    /// and says more than expiry), otherwise a client whose `expires_at` is
    /// at or before `now` is expired, whatever it was. The one place of the
    /// rule `service::clients::status_of` applies to rows.
    pub fn shown(self, expires_at: Option<i64>, now: i64) -> ShownStatus {
        match self {
            ClientStatus::Revoked => ShownStatus::Revoked,
            _ if expires_at.is_some_and(|e| e <= now) => ShownStatus::Expired,
            ClientStatus::Disabled => ShownStatus::Disabled,
            ClientStatus::Active => ShownStatus::Active,
        }
    }
}

fn unreadable_json(e: serde_json::Error) -> String {
    format!("not the JSON expected: {e}")
}

/// The networks a client may be used from; empty means any address.
///
/// The stored strings are kept beside the parsed networks: the admin API
/// shows the list as it was stored, and a round trip back to the row writes
/// exactly what was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AllowedNetworks {
    entries: Vec<String>,
    nets: Vec<IpNet>,
}

impl AllowedNetworks {
    /// Reads the stored JSON array. Strict, unlike the old readers: a list
    /// that is not an array of strings, or one entry that is not a CIDR or
    /// address, makes the whole value unreadable. Skipping the bad entry
    /// would widen or narrow the list without anyone having asked for it.
    pub fn from_json(text: &str) -> Result<AllowedNetworks, String> {
        let entries: Vec<String> = serde_json::from_str(text).map_err(unreadable_json)?;
        let nets = entries
            .iter()
            .map(|entry| crate::config::parse_cidr(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedNetworks { entries, nets })
    }

    /// From the admin API's input: each entry by the same rule as
    /// `config::parse_cidr` and stored in canonical form (`192.0.2.7`
    /// becomes `192.0.2.7/32`), as `clients::validate_allowed_ips` does.
    pub fn from_entries<S: AsRef<str>>(list: &[S]) -> Result<AllowedNetworks, String> {
        let nets = list
            .iter()
            .map(|entry| crate::config::parse_cidr(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedNetworks {
            entries: nets.iter().map(IpNet::to_string).collect(),
            nets,
        })
    }

    /// Whether `ip` may use the client. An empty list allows any address;
    /// an unknown address (None: a proxy that was not trusted, say) matches
    /// no non-empty list.
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        ip.is_some_and(|ip| self.nets.iter().any(|net| net.contains(&ip)))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// The entries as stored, and as the admin API shows them.
    pub fn as_strings(&self) -> &[String] {
        &self.entries
    }

    pub fn to_json(&self) -> String {
        json_array(&self.entries)
    }
}

impl Serialize for AllowedNetworks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

/// A JSON array of strings. Serialising strings cannot fail; the fallback
/// is there only so that no `expect` is needed.
fn json_array(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_string())
}

/// A list of strings stored as a JSON array, read strictly: anything but an
/// array of strings is unreadable.
fn string_list(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(text).map_err(unreadable_json)
}

/// A list of strings stored as a JSON array, read strictly: an unreadable
/// list is an error, never taken as empty.
macro_rules! string_list {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(Vec<String>);

        impl $name {
            pub fn new(list: Vec<String>) -> $name {
                $name(list)
            }

            pub fn from_json(text: &str) -> Result<$name, String> {
                string_list(text).map($name)
            }

            pub fn to_json(&self) -> String {
                json_array(&self.0)
            }

            pub fn contains(&self, item: &str) -> bool {
                self.0.iter().any(|i| i == item)
            }

            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            pub fn as_slice(&self) -> &[String] {
                &self.0
            }

            pub fn into_vec(self) -> Vec<String> {
                self.0
            }
        }
    };
}

string_list!(
    /// The audiences a client's tokens may name (RFC 8707 resources); empty
    /// means the issuer alone. An unreadable list was once taken as empty,
    /// which silently turned a client's tokens into issuer-only ones.
    Audience
);

string_list!(
    /// The addresses told about a tenant (kept for people, not checked by
    /// any authorisation).
    OwnerEmails
);

/// A client's free-form metadata. Always a JSON object: the admin API
/// promises one, and the service stores nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(serde_json::Map<String, serde_json::Value>);

impl Metadata {
    pub fn new(map: serde_json::Map<String, serde_json::Value>) -> Metadata {
        Metadata(map)
    }

    /// Reads the stored object. `null`, an array or a scalar is as corrupt
    /// as text that is not JSON at all.
    pub fn from_json(text: &str) -> Result<Metadata, String> {
        serde_json::from_str(text)
            .map(Metadata)
            .map_err(|e| format!("not a JSON object: {e}"))
    }

    /// Compact JSON, as the service writes it (`Value::to_string`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    pub fn into_map(self) -> serde_json::Map<String, serde_json::Value> {
        self.0
    }
}

/// A tenant's materialised path: its ancestors' ids and its own, each
/// followed by `/` (`/tn_root/tn_child/`). The trailing `/` is what makes
/// a string prefix a subtree test: `/tn_a/` is not a prefix of `/tn_ab/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantPath(String);

/// A path reads as the string it is wherever a `&str` is taken.
impl std::ops::Deref for TenantPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<String> for TenantPath {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<TenantPath> for String {
    fn eq(&self, other: &TenantPath) -> bool {
        self == &other.0
    }
}

impl TenantPath {
    /// Checks the shape every prefix test relies on: starts and ends with
    /// `/`, at least one segment, no empty segment.
    pub fn parse(path: impl Into<String>) -> Result<TenantPath, String> {
        let path = path.into();
        let well_formed = path.len() >= 3
            && path.starts_with('/')
            && path.ends_with('/')
            && path[1..path.len() - 1].split('/').all(|s| !s.is_empty());
        if well_formed {
            Ok(TenantPath(path))
        } else {
            Err(format!(
                "{path:?} is not a tenant path such as /tn_root/tn_child/"
            ))
        }
    }

    /// The path of a top-level tenant.
    pub fn root(id: &TenantId) -> TenantPath {
        TenantPath(format!("/{id}/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ids along the path, the top-level tenant first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[1..self.0.len() - 1].split('/')
    }

    /// The id of the tenant this path ends in.
    pub fn last(&self) -> &str {
        self.segments().last().unwrap_or_default()
    }

    /// Whether `other` is this path or lies below it. Both end in `/`, so a
    /// prefix match is a match of whole segments.
    pub fn contains(&self, other: &TenantPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// A LIKE pattern for this path and everything below it, for use with
    /// `.escape('\\')`. Ids contain `_`, a LIKE wildcard: unescaped,
    /// `/tn_a/%` would also match `/tnXa/...`. The store's queries build the
    /// same pattern from a path (`store::tenants::subtree_pattern`).
    pub fn like_pattern(&self) -> String {
        crate::store::tenants::subtree_pattern(&self.0)
    }

    /// The path of a child tenant `id` of this one.
    pub fn child(&self, id: &TenantId) -> TenantPath {
        TenantPath(format!("{}{id}/", self.0))
    }

    /// This path moved along with the subtree at `old_prefix` to
    /// `new_prefix`: the tail below the subtree's root is kept. None when
    /// this path is not in that subtree.
    pub fn rebase(&self, old_prefix: &TenantPath, new_prefix: &TenantPath) -> Option<TenantPath> {
        let tail = self.0.strip_prefix(old_prefix.0.as_str())?;
        Some(TenantPath(format!("{}{tail}", new_prefix.0)))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl TryFrom<String> for TenantPath {
    type Error = String;

    fn try_from(path: String) -> Result<TenantPath, String> {
        TenantPath::parse(path)
    }
}

impl From<TenantPath> for String {
    fn from(path: TenantPath) -> String {
        path.0
    }
}

impl AsRef<str> for TenantPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client row, parsed. Field for field `models::Client`; see that type
/// and the migrations for what each column means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: ClientId,
    pub kind: ClientKind,
    pub name: String,
    pub description: Option<String>,
    pub tenant_id: TenantId,
    pub role: String,
    /// Parsed, so a corrupt scope string is an error here rather than the
    /// empty set the admin API showed. Written back sorted and deduplicated,
    /// the form the service stores anyway.
    pub scopes: ScopeSet,
    pub device_group_id: Option<String>,
    pub owner: Option<String>,
    pub owner_email: Option<String>,
    pub status: ClientStatus,
    pub expires_at: Option<i64>,
    pub can_renew: bool,
    pub allowed_ips: AllowedNetworks,
    pub access_token_ttl: i64,
    pub token_lifetime: i64,
    pub audience: Audience,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// The optimistic-locking counter (see `clients::bump_version`).
    pub version: i64,
    /// Set for a personal API access key: the user it belongs to.
    pub user_id: Option<UserId>,
    pub auth_method: AuthMethod,
    /// Public keys for `private_key_jwt`, registered inline.
    pub jwks: Option<ClientKeys>,
    /// Or where the client publishes them.
    pub jwks_uri: Option<String>,
    pub federated_subjects: FederatedSubjects,
}

impl Client {
    /// The status a caller sees at `now` (`expired` derived).
    pub fn shown_status(&self, now: i64) -> ShownStatus {
        self.status.shown(self.expires_at, now)
    }

    /// Whether the client's credentials and tokens work at `now`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.shown_status(now) == ShownStatus::Active
    }
}

impl TryFrom<models::Client> for Client {
    type Error = CorruptField;

    fn try_from(row: models::Client) -> Result<Client, CorruptField> {
        let id = row.client_id;
        let corrupt = |field, reason: String| CorruptField::new(CLIENTS, id.clone(), field, reason);
        let kind = row
            .kind
            .parse::<ClientKind>()
            .map_err(|e| corrupt("kind", e.to_string()))?;
        let status = row
            .status
            .parse::<ClientStatus>()
            .map_err(|e| corrupt("status", e.to_string()))?;
        let scopes = ScopeSet::parse(&row.scopes).map_err(|e| corrupt("scopes", e))?;
        let allowed_ips =
            AllowedNetworks::from_json(&row.allowed_ips).map_err(|e| corrupt("allowed_ips", e))?;
        let audience = Audience::from_json(&row.audience).map_err(|e| corrupt("audience", e))?;
        let metadata = Metadata::from_json(&row.metadata).map_err(|e| corrupt("metadata", e))?;
        let auth_method = row
            .token_endpoint_auth_method
            .parse::<AuthMethod>()
            .map_err(|e| corrupt("token_endpoint_auth_method", e.to_string()))?;
        let jwks = row
            .jwks
            .as_deref()
            .map(ClientKeys::from_json)
            .transpose()
            .map_err(|e| corrupt("jwks", e))?;
        let federated_subjects = FederatedSubjects::from_json(&row.federated_subjects)
            .map_err(|e| corrupt("federated_subjects", e))?;
        Ok(Client {
            client_id: ClientId(id),
            kind,
            name: row.name,
            description: row.description,
            tenant_id: TenantId(row.tenant_id),
            role: row.role,
            scopes,
            device_group_id: row.device_group_id,
            owner: row.owner,
            owner_email: row.owner_email,
            status,
            expires_at: row.expires_at,
            can_renew: row.can_renew,
            allowed_ips,
            access_token_ttl: row.access_token_ttl,
            token_lifetime: row.token_lifetime,
            audience,
            metadata,
            created_at: row.created_at,
            updated_at: row.updated_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            version: row.version,
            user_id: row.user_id.map(UserId),
            auth_method,
            jwks,
            jwks_uri: row.jwks_uri,
            federated_subjects,
        })
    }
}

/// Back to a row, for inserts and for updates (`.set(&row)` writes every
/// column, so every field must survive the trip).
impl From<&Client> for models::Client {
    fn from(c: &Client) -> models::Client {
        models::Client {
            client_id: c.client_id.0.clone(),
            kind: c.kind.as_str().to_string(),
            name: c.name.clone(),
            description: c.description.clone(),
            tenant_id: c.tenant_id.0.clone(),
            role: c.role.clone(),
            scopes: c.scopes.to_string(),
            device_group_id: c.device_group_id.clone(),
            owner: c.owner.clone(),
            owner_email: c.owner_email.clone(),
            status: c.status.as_str().to_string(),
            expires_at: c.expires_at,
            can_renew: c.can_renew,
            allowed_ips: c.allowed_ips.to_json(),
            access_token_ttl: c.access_token_ttl,
            token_lifetime: c.token_lifetime,
            audience: c.audience.to_json(),
            metadata: c.metadata.to_json(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            revoked_at: c.revoked_at,
            last_used_at: c.last_used_at,
            version: c.version,
            user_id: c.user_id.as_ref().map(|u| u.0.clone()),
            token_endpoint_auth_method: c.auth_method.as_str().to_string(),
            jwks: c.jwks.as_ref().map(ClientKeys::to_json),
            jwks_uri: c.jwks_uri.clone(),
            federated_subjects: c.federated_subjects.to_json(),
        }
    }
}

/// A tenant row, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// None for a top-level tenant only.
    pub parent_id: Option<TenantId>,
    pub path: TenantPath,
    pub owner_emails: OwnerEmails,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<models::Tenant> for Tenant {
    type Error = CorruptField;

    /// Besides its shape, the path must agree with the row: it ends in the
    /// tenant's own id and, one up, its parent's (a top-level tenant's path
    /// is its id alone). A path that disagrees would give the tenant the
    /// reach of some other place in the tree.
    fn try_from(row: models::Tenant) -> Result<Tenant, CorruptField> {
        let id = row.id;
        let corrupt = |field, reason: String| CorruptField::new(TENANTS, id.clone(), field, reason);
        let path = TenantPath::parse(row.path).map_err(|e| corrupt("path", e))?;
        let segments: Vec<&str> = path.segments().collect();
        let parent_in_path = segments.len().checked_sub(2).map(|i| segments[i]);
        if segments.last() != Some(&id.as_str()) {
            return Err(corrupt(
                "path",
                format!("{:?} does not end in the tenant's own id", path.as_str()),
            ));
        }
        if parent_in_path != row.parent_id.as_deref() {
            return Err(corrupt(
                "path",
                format!(
                    "{:?} does not agree with parent_id {:?}",
                    path.as_str(),
                    row.parent_id
                ),
            ));
        }
        let owner_emails =
            OwnerEmails::from_json(&row.owner_emails).map_err(|e| corrupt("owner_emails", e))?;
        Ok(Tenant {
            id: TenantId(id),
            name: row.name,
            parent_id: row.parent_id.map(TenantId),
            path,
            owner_emails,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl From<&Tenant> for models::Tenant {
    fn from(t: &Tenant) -> models::Tenant {
        models::Tenant {
            id: t.id.0.clone(),
            name: t.name.clone(),
            parent_id: t.parent_id.as_ref().map(|p| p.0.clone()),
            path: t.path.0.clone(),
            owner_emails: t.owner_emails.to_json(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

string_enum!(
    /// A user's status: a disabled user cannot sign in, and has no session.
    UserStatus, "user status" {
        Active => "active",
        Disabled => "disabled",
    }
);

/// A user row, parsed. The password hash stays the PHC string it is; it is
/// never shown (`Debug` redacts it).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub tenant_id: TenantId,
    pub role: String,
    pub status: UserStatus,
    /// Argon2id, PHC string; None until the person chooses a password.
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    pub version: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("status", &self.status)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl TryFrom<models::User> for User {
    type Error = CorruptField;

    fn try_from(row: models::User) -> Result<User, CorruptField> {
        let id = row.user_id;
        let corrupt = |field, reason: String| CorruptField::new(USERS, id.clone(), field, reason);
        let status = row
            .status
            .parse::<UserStatus>()
            .map_err(|e| corrupt("status", e.to_string()))?;
        if let Some(hash) = &row.password_hash {
            if !hash.starts_with("$argon2id$") {
                return Err(corrupt(
                    "password_hash",
                    "not an Argon2id PHC string".to_string(),
                ));
            }
        }
        Ok(User {
            user_id: UserId(id),
            email: row.email,
            name: row.name,
            tenant_id: TenantId(row.tenant_id),
            role: row.role,
            status,
            password_hash: row.password_hash,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_login_at: row.last_login_at,
            version: row.version,
        })
    }
}

impl From<&User> for models::User {
    fn from(u: &User) -> models::User {
        models::User {
            user_id: u.user_id.0.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            tenant_id: u.tenant_id.0.clone(),
            role: u.role.clone(),
            status: u.status.as_str().to_string(),
            password_hash: u.password_hash.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_login_at: u.last_login_at,
            version: u.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_row() -> models::Client {
        models::Client {
            client_id: "kwc_x".into(),
            kind: "api_token".into(),
            name: "uploader".into(),
            description: Some("site 4".into()),
            tenant_id: "tn_a".into(),
            role: "device".into(),
            scopes: "read upload".into(),
            device_group_id: Some("dg_1".into()),
            owner: None,
            owner_email: Some("ops@example.com".into()),
            status: "disabled".into(),
            expires_at: Some(2_000),
            can_renew: true,
            allowed_ips: r#"["10.0.0.0/8","192.0.2.7/32","2001:db8::/32"]"#.into(),
            access_token_ttl: 3600,
            token_lifetime: 2_592_000,
            audience: r#"["https://api.example"]"#.into(),
            metadata: r#"{"rack":7,"site":"north"}"#.into(),
            created_at: 1_000,
            updated_at: 1_500,
            revoked_at: None,
            last_used_at: Some(1_600),
            version: 3,
            user_id: None,
            token_endpoint_auth_method: "client_secret_basic".into(),
            jwks: None,
            jwks_uri: None,
            federated_subjects: "[]".into(),
        }
    }

    fn tenant_row(id: &str, parent_id: Option<&str>, path: &str) -> models::Tenant {
        models::Tenant {
            id: id.into(),
            name: "North".into(),
            parent_id: parent_id.map(Into::into),
            path: path.into(),
            owner_emails: r#"["a@example.com"]"#.into(),
            created_at: 10,
            updated_at: 20,
        }
    }

    fn path(p: &str) -> TenantPath {
        TenantPath::parse(p).unwrap()
    }

    /// Every column, compared through Debug: the row type has no PartialEq.
    fn same_row<T: fmt::Debug>(a: &T, b: &T) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn client_row_round_trips_unchanged() {
        let row = client_row();
        let client = Client::try_from(row.clone()).unwrap();
        assert_eq!(client.kind, ClientKind::ApiToken);
        assert_eq!(client.status, ClientStatus::Disabled);
        assert_eq!(client.client_id, "kwc_x");
        assert_eq!(client.audience.as_slice(), ["https://api.example"]);
        assert_eq!(client.metadata.as_map()["rack"], 7);
        same_row(&models::Client::from(&client), &row);
    }

    #[test]
    fn allowed_ips_show_as_stored() {
        let mut row = client_row();
        // Not the canonical form (no /32), yet shown and written back as is.
        row.allowed_ips = r#"["192.0.2.7","10.1.2.3/8"]"#.into();
        let client = Client::try_from(row.clone()).unwrap();
        assert_eq!(client.allowed_ips.as_strings(), ["192.0.2.7", "10.1.2.3/8"]);
        assert_eq!(models::Client::from(&client).allowed_ips, row.allowed_ips);
        assert_eq!(
            serde_json::to_string(&client.allowed_ips).unwrap(),
            row.allowed_ips
        );
    }

    #[test]
    fn from_entries_stores_the_canonical_form_like_the_api() {
        let nets = AllowedNetworks::from_entries(&[" 192.0.2.7 ", "2001:db8::/32"]).unwrap();
        assert_eq!(nets.as_strings(), ["192.0.2.7/32", "2001:db8::/32"]);
        assert!(AllowedNetworks::from_entries(&["nonsense"]).is_err());
    }

    #[test]
    fn tenant_row_round_trips_unchanged() {
        for row in [
            tenant_row("tn_root", None, "/tn_root/"),
            tenant_row("tn_b", Some("tn_a"), "/tn_root/tn_a/tn_b/"),
        ] {
            let tenant = Tenant::try_from(row.clone()).unwrap();
            assert_eq!(tenant.owner_emails.as_slice(), ["a@example.com"]);
            same_row(&models::Tenant::from(&tenant), &row);
        }
    }

    /// One change that spoils a client row.
    type Spoil = fn(&mut models::Client);

    fn client_error(edit: Spoil) -> CorruptField {
        let mut row = client_row();
        edit(&mut row);
        Client::try_from(row).unwrap_err()
    }

    #[test]
    fn every_corrupt_client_field_is_an_error_naming_it() {
        let cases: &[(&str, Spoil)] = &[
            ("kind", |r| r.kind = "password".into()),
            ("status", |r| r.status = "expired".into()),
            ("status", |r| r.status = "".into()),
            ("scopes", |r| r.scopes = "read \"x\"".into()),
            ("allowed_ips", |r| r.allowed_ips = "".into()),
            ("allowed_ips", |r| r.allowed_ips = "[10.0.0.0/8]".into()),
            ("allowed_ips", |r| r.allowed_ips = r#""10.0.0.0/8""#.into()),
            ("allowed_ips", |r| {
                r.allowed_ips = r#"["10.0.0.0/8","10.0.0.0/33"]"#.into()
            }),
            ("allowed_ips", |r| r.allowed_ips = "[1]".into()),
            ("audience", |r| r.audience = "{".into()),
            ("audience", |r| r.audience = "null".into()),
            ("metadata", |r| r.metadata = "not json".into()),
            ("metadata", |r| r.metadata = "null".into()),
            ("metadata", |r| r.metadata = "[]".into()),
        ];
        for &(field, edit) in cases {
            let e = client_error(edit);
            assert_eq!(
                (e.table, e.id.as_str(), e.field),
                ("clients", "kwc_x", field)
            );
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("stored clients.{field} of kwc_x is unreadable: ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn unknown_kind_and_status_name_the_value() {
        let e = client_error(|r| r.kind = "password".into());
        assert!(e.reason.contains("\"password\""), "{e}");
        assert!(e.reason.contains("client_credentials, api_token"), "{e}");
        let e = "Active".parse::<ClientStatus>().unwrap_err();
        assert_eq!(e.value, "Active");
        assert_eq!(
            e.to_string(),
            "client status \"Active\" is not one of active, disabled, revoked"
        );
    }

    #[test]
    fn corrupt_tenant_fields_are_errors_naming_them() {
        let cases = [
            (
                "owner_emails",
                tenant_row("tn_a", None, "/tn_a/"),
                Some("["),
            ),
            (
                "owner_emails",
                tenant_row("tn_a", None, "/tn_a/"),
                Some("{}"),
            ),
            ("path", tenant_row("tn_a", None, "tn_a"), None),
            ("path", tenant_row("tn_a", None, "/tn_a"), None),
            ("path", tenant_row("tn_a", None, "//tn_a/"), None),
            ("path", tenant_row("tn_a", None, "/"), None),
            ("path", tenant_row("tn_a", None, "/tn_b/"), None),
            ("path", tenant_row("tn_a", None, "/tn_root/tn_a/"), None),
            ("path", tenant_row("tn_a", Some("tn_root"), "/tn_a/"), None),
            (
                "path",
                tenant_row("tn_a", Some("tn_x"), "/tn_root/tn_a/"),
                None,
            ),
        ];
        for (field, mut row, emails) in cases {
            if let Some(emails) = emails {
                row.owner_emails = emails.into();
            }
            let e = Tenant::try_from(row).unwrap_err();
            assert_eq!(
                (e.table, e.id.as_str(), e.field),
                ("tenants", "tn_a", field),
                "{e}"
            );
        }
    }

    #[test]
    fn kinds_and_statuses_read_and_write_their_strings() {
        for kind in ClientKind::ALL {
            assert_eq!(kind.as_str().parse::<ClientKind>().unwrap(), *kind);
            assert_eq!(
                serde_json::to_string(kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        for status in ClientStatus::ALL {
            assert_eq!(status.as_str().parse::<ClientStatus>().unwrap(), *status);
            assert_eq!(
                serde_json::from_str::<ClientStatus>(&format!("\"{status}\"")).unwrap(),
                *status
            );
        }
        assert_eq!(ClientKind::ClientCredentials.as_str(), "client_credentials");
        assert_eq!(
            serde_json::to_string(&ShownStatus::Expired).unwrap(),
            "\"expired\""
        );
    }

    #[test]
    fn expired_is_shown_at_and_after_expires_at_unless_revoked() {
        use ClientStatus::*;
        assert_eq!(Active.shown(Some(100), 99), ShownStatus::Active);
        assert_eq!(Active.shown(Some(100), 100), ShownStatus::Expired);
        assert_eq!(Active.shown(Some(100), 101), ShownStatus::Expired);
        assert_eq!(Disabled.shown(Some(100), 99), ShownStatus::Disabled);
        assert_eq!(Disabled.shown(Some(100), 100), ShownStatus::Expired);
        assert_eq!(Revoked.shown(Some(100), 100), ShownStatus::Revoked);
        assert_eq!(Active.shown(None, i64::MAX), ShownStatus::Active);

        let mut row = client_row();
        row.status = "active".into();
        let client = Client::try_from(row).unwrap();
        assert!(client.is_usable(1_999));
        assert!(!client.is_usable(2_000));
        assert_eq!(client.shown_status(2_000).as_str(), "expired");
    }

    #[test]
    fn revoked_wins_then_expired_then_the_stored_status() {
        let mut row = client_row();
        for status in ["active", "disabled", "revoked"] {
            for expires_at in [None, Some(50), Some(100), Some(150)] {
                row.status = status.into();
                row.expires_at = expires_at;
                let client = Client::try_from(row.clone()).unwrap();
                let expected = match (status, expires_at) {
                    ("revoked", _) => "revoked",
                    (_, Some(at)) if at <= 100 => "expired",
                    (other, _) => other,
                };
                assert_eq!(client.shown_status(100).as_str(), expected);
                assert_eq!(client.is_usable(100), expected == "active");
            }
        }
    }

    #[test]
    fn allows_any_address_when_empty_and_only_listed_ones_otherwise() {
        let v4: IpAddr = "10.9.8.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let elsewhere: IpAddr = "192.0.2.8".parse().unwrap();

        let any = AllowedNetworks::from_json("[]").unwrap();
        assert!(any.allows(Some(v4)) && any.allows(Some(v6)) && any.allows(None));

        let some =
            AllowedNetworks::from_json(r#"["10.0.0.0/8","2001:db8::/32","192.0.2.7"]"#).unwrap();
        assert!(some.allows(Some(v4)));
        assert!(some.allows(Some(v6)));
        assert!(some.allows(Some("192.0.2.7".parse().unwrap())));
        assert!(!some.allows(Some(elsewhere)));
        assert!(!some.allows(Some("2001:db9::1".parse().unwrap())));
        assert!(!some.allows(None), "an unknown address matches no list");
    }

    #[test]
    fn audience_contains_only_whole_entries() {
        let audience = Audience::from_json(r#"["https://a.example","b"]"#).unwrap();
        assert!(audience.contains("b"));
        assert!(!audience.contains("https://a"));
        assert_eq!(audience.to_json(), r#"["https://a.example","b"]"#);
        assert!(Audience::from_json("[]").unwrap().is_empty());
    }

    #[test]
    fn contains_matches_whole_segments_only() {
        let a = path("/tn_root/tn_a/");
        assert!(a.contains(&a));
        assert!(a.contains(&path("/tn_root/tn_a/tn_c/")));
        assert!(
            !a.contains(&path("/tn_root/tn_ab/")),
            "a sibling sharing a prefix"
        );
        assert!(!a.contains(&path("/tn_root/")), "a parent");
        assert!(path("/tn_root/").contains(&a));
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(path("/tn_a/").like_pattern(), "/tn\\_a/%");
        assert_eq!(path("/a%b\\c/").like_pattern(), "/a\\%b\\\\c/%");
    }

    #[test]
    fn child_and_rebase_follow_the_tree() {
        let root = TenantPath::root(&TenantId::from("tn_root"));
        assert_eq!(root.as_str(), "/tn_root/");
        let a = root.child(&TenantId::from("tn_a"));
        assert_eq!(a.as_str(), "/tn_root/tn_a/");
        assert_eq!(a.last(), "tn_a");
        assert_eq!(a.segments().collect::<Vec<_>>(), ["tn_root", "tn_a"]);

        // tn_a moves under tn_b: its subtree keeps the tails below it.
        let below = path("/tn_root/tn_a/tn_c/");
        let moved_to = path("/tn_root/tn_b/tn_a/");
        assert_eq!(
            below.rebase(&a, &moved_to).unwrap().as_str(),
            "/tn_root/tn_b/tn_a/tn_c/"
        );
        assert_eq!(a.rebase(&a, &moved_to).unwrap(), moved_to);
        assert_eq!(path("/tn_root/tn_ab/").rebase(&a, &moved_to), None);
    }

    #[test]
    fn tenant_path_deserialises_only_well_formed_paths() {
        let ok: TenantPath = serde_json::from_str("\"/tn_a/\"").unwrap();
        assert_eq!(ok.as_str(), "/tn_a/");
        assert!(serde_json::from_str::<TenantPath>("\"/tn_a\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"/tn_a/\"");
    }

    #[test]
    fn ids_look_up_by_str_and_serialise_as_strings() {
        let mut map = std::collections::HashMap::new();
        map.insert(ClientId::from("kwc_x"), 1);
        assert_eq!(map.get("kwc_x"), Some(&1));
        let id = TenantId::from("tn_a".to_string());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"tn_a\"");
        assert_eq!(id.to_string(), "tn_a");
        assert_eq!(id.into_inner(), "tn_a");
    }

    fn user_row() -> models::User {
        models::User {
            user_id: "usr_1".into(),
            email: "Ann@Example.com".into(),
            name: "Ann".into(),
            tenant_id: "tn_a".into(),
            role: "admin".into(),
            status: "active".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            created_at: 1,
            updated_at: 2,
            last_login_at: None,
            version: 1,
        }
    }

    #[test]
    fn a_user_row_round_trips_and_a_corrupt_one_names_its_field() {
        let user = User::try_from(user_row()).unwrap();
        assert_eq!(user.status, UserStatus::Active);
        let back = models::User::from(&user);
        assert_eq!(User::try_from(back).unwrap(), user);
        assert!(!format!("{user:?}").contains("argon2id$v"));
        let mut bad = user_row();
        bad.status = "asleep".into();
        assert_eq!(User::try_from(bad).unwrap_err().field, "status");
        let mut bad = user_row();
        bad.password_hash = Some("plain".into());
        assert_eq!(User::try_from(bad).unwrap_err().field, "password_hash");
    }
}

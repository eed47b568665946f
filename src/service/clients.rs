//! Clients, both kinds, and their lifecycle: register, disable and enable,
//! revoke. The row (`store::models::Client`) is never serialised; callers get
//! `ClientView`, which has no secret and no hash in it.

use serde::{Deserialize, Serialize};

use super::client_keys;
use super::durations::{self, DurationSpec};
pub use super::patch::ClientPatch;
use super::policy::{self, ClientAction};
use super::scopes::ScopeSet;
use super::{audit, now, rfc3339, tenants, Actor, ServiceError, ServiceResult};
use crate::domain::{
    AllowedNetworks, Audience, Client, ClientId, ClientKeys, ClientKind, ClientStatus, Metadata,
    ShownStatus,
};
use crate::store::changes::Change;
use crate::store::clients::{self as store, ListFilter, StatusFilter};
use crate::store::models::{ApiTokenRow, ClientSecret};
use crate::store::{api_tokens as store_api_tokens, device_groups as store_device_groups};
use crate::store::{AnyConnection, Conn, Tx};
use crate::tokens::opaque::{self, display_prefix, random_id, Secret};

pub const KIND_CLIENT_CREDENTIALS: &str = ClientKind::ClientCredentials.as_str();
pub const KIND_API_TOKEN: &str = ClientKind::ApiToken.as_str();

pub const STATUS_ACTIVE: &str = ShownStatus::Active.as_str();
pub const STATUS_DISABLED: &str = ShownStatus::Disabled.as_str();
pub const STATUS_REVOKED: &str = ShownStatus::Revoked.as_str();
pub const STATUS_EXPIRED: &str = ShownStatus::Expired.as_str();

/// The status a caller sees: `expired` is derived from `expires_at`.
pub fn status_of(client: &Client, now: i64) -> &'static str {
    client.shown_status(now).as_str()
}

/// Whether the client's credentials and tokens work right now.
pub fn is_usable(client: &Client, now: i64) -> bool {
    client.is_usable(now)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub tenant_id: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub device_group_id: Option<String>,
    pub owner: Option<String>,
    pub owner_email: Option<String>,
    pub status: String,
    pub expires_at: Option<String>,
    pub can_renew: bool,
    pub allowed_ips: Vec<String>,
    pub access_token_ttl: i64,
    pub token_lifetime: i64,
    pub audience: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// Set on a person's personal API access key: that person's user_id.
    pub user_id: Option<String>,
    /// client_secret_basic, client_secret_post or private_key_jwt.
    pub token_endpoint_auth_method: String,
    /// The registered JWK Set (public keys), or null.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    pub federated_subjects: Vec<crate::domain::FederatedSubject>,
}

impl ClientView {
    pub fn new(c: &Client, now: i64) -> ClientView {
        ClientView {
            client_id: c.client_id.to_string(),
            kind: c.kind.as_str().to_string(),
            name: c.name.clone(),
            description: c.description.clone(),
            tenant_id: c.tenant_id.to_string(),
            role: c.role.clone(),
            scopes: c.scopes.to_vec(),
            device_group_id: c.device_group_id.clone(),
            owner: c.owner.clone(),
            owner_email: c.owner_email.clone(),
            status: status_of(c, now).to_string(),
            expires_at: c.expires_at.map(rfc3339),
            can_renew: c.can_renew,
            allowed_ips: c.allowed_ips.as_strings().to_vec(),
            access_token_ttl: c.access_token_ttl,
            token_lifetime: c.token_lifetime,
            audience: c.audience.as_slice().to_vec(),
            metadata: serde_json::Value::Object(c.metadata.as_map().clone()),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            revoked_at: c.revoked_at.map(rfc3339),
            last_used_at: c.last_used_at.map(rfc3339),
            user_id: c.user_id.as_ref().map(ToString::to_string),
            token_endpoint_auth_method: c.auth_method.as_str().to_string(),
            jwks: c.jwks.as_ref().map(ClientKeys::to_value),
            jwks_uri: c.jwks_uri.clone(),
            federated_subjects: c.federated_subjects.0.clone(),
        }
    }
}

/// A request to register a client (admin API body and CLI flags alike).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(min_length = 1)]
    pub name: String,
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub role: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub device_group_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub owner: Option<String>,
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r"^\s*([^\s@\x00-\x1f\x7f-\x9f]+@[^\s@.\x00-\x1f\x7f-\x9f][^\s@\x00-\x1f\x7f-\x9f]*\.[^\s@\x00-\x1f\x7f-\x9f]*[^\s@.\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub owner_email: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub expires_in: Option<DurationSpec>,
    #[serde(default)]
    pub can_renew: Option<bool>,
    #[serde(default)]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86400)]
    pub access_token_ttl: Option<i64>,
    #[serde(default)]
    pub token_lifetime: Option<DurationSpec>,
    #[serde(default)]
    pub audience: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// client_secret_basic (default), client_secret_post or private_key_jwt.
    #[serde(default)]
    #[schema(pattern = r"^(client_secret_basic|client_secret_post|private_key_jwt)$")]
    pub token_endpoint_auth_method: Option<String>,
    /// A JWK Set of public keys (private_key_jwt).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its JWK Set (private_key_jwt): https, and
    /// not a loopback, link-local or private address (unless the server runs
    /// with KEYWARD_ALLOW_INSECURE_JWKS). Fetched at registration.
    #[serde(default)]
    #[schema(pattern = r"^https://[^\s/?#@]+[^\s]*$", max_length = 2000)]
    pub jwks_uri: Option<String>,
    /// (issuer, subject) pairs of trusted issuers this client answers to.
    #[serde(default)]
    pub federated_subjects: Option<Vec<crate::domain::FederatedSubject>>,
}

/// What a new client (or a rotation) hands out, exactly once.
#[derive(Debug)]
pub enum IssuedCredential {
    ClientSecret(Secret),
    ApiToken {
        token: Secret,
        expires_at: i64,
    },
    /// A private_key_jwt client: its keys are its credential.
    Nothing,
}

/// The client and its tenant's path.
pub fn find_with_path(
    conn: &mut AnyConnection,
    client_id: &str,
) -> ServiceResult<Option<(Client, String)>> {
    Ok(store::find_with_path(conn, client_id)?)
}

/// The client, if it exists and is in the actor's reach; NotFound otherwise.
pub fn find_reachable(
    conn: &mut AnyConnection,
    actor: &Actor,
    client_id: &str,
) -> ServiceResult<Client> {
    policy::client_for(conn, actor, client_id, ClientAction::Read)
}

pub fn validate_access_token_ttl(ttl: i64) -> ServiceResult<i64> {
    if (durations::ACCESS_TOKEN_TTL_MIN..=durations::ACCESS_TOKEN_TTL_MAX).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(ServiceError::Invalid(format!(
            "access_token_ttl must be between {} and {} seconds",
            durations::ACCESS_TOKEN_TTL_MIN,
            durations::ACCESS_TOKEN_TTL_MAX
        )))
    }
}

pub fn validate_token_lifetime(spec: &DurationSpec) -> ServiceResult<i64> {
    let seconds = spec
        .seconds()
        .map_err(|e| ServiceError::Invalid(format!("token_lifetime: {e}")))?;
    if (durations::TOKEN_LIFETIME_MIN..=durations::TOKEN_LIFETIME_MAX).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(ServiceError::Invalid(
            "token_lifetime must be between 7 days and 1 year".into(),
        ))
    }
}

/// `expires_at` (RFC 3339) or `expires_in` (a duration), at most one.
pub fn resolve_expiry(
    expires_at: Option<&str>,
    expires_in: Option<&DurationSpec>,
    now: i64,
) -> ServiceResult<Option<i64>> {
    match (expires_at, expires_in) {
        (Some(_), Some(_)) => Err(ServiceError::Invalid(
            "give expires_at or expires_in, not both".into(),
        )),
        (Some(at), None) => {
            let ts = chrono::DateTime::parse_from_rfc3339(at)
                .map_err(|_| {
                    ServiceError::Invalid(format!("expires_at {at:?} is not an RFC 3339 time"))
                })?
                .timestamp();
            if ts <= now {
                return Err(ServiceError::Invalid("expires_at is in the past".into()));
            }
            if ts - now > durations::EXPIRY_MAX {
                return Err(ServiceError::Invalid(
                    "expires_at must be at most 10 years (3650 days) ahead".into(),
                ));
            }
            Ok(Some(ts))
        }
        (None, Some(spec)) => {
            let seconds = spec
                .seconds()
                .map_err(|e| ServiceError::Invalid(format!("expires_in: {e}")))?;
            durations::expiry_after(now, seconds)
                .map(Some)
                .map_err(|e| ServiceError::Invalid(format!("expires_in {e}")))
        }
        (None, None) => Ok(None),
    }
}

pub fn validate_allowed_ips(list: &[String]) -> ServiceResult<AllowedNetworks> {
    AllowedNetworks::from_entries(list)
        .map_err(|e| ServiceError::Invalid(format!("allowed_ips: {e}")))
}

pub fn validate_audience(list: &[String]) -> ServiceResult<Audience> {
    validate_audience_list(list).map(Audience::new)
}

fn validate_audience_list(list: &[String]) -> ServiceResult<Vec<String>> {
    list.iter()
        .map(|a| {
            let a = a.trim();
            if a.is_empty()
                || a.len() > 2000
                || a.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(ServiceError::Invalid(format!(
                    "audience {a:?} is not valid"
                )))
            } else {
                Ok(a.to_string())
            }
        })
        .collect()
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> ServiceResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max => Err(ServiceError::Invalid(format!(
            "{field} is longer than {max} characters"
        ))),
        Some(v) => Ok(Some(v.to_string())),
    }
}

pub fn insert_secret(conn: &mut AnyConnection, client_id: &str, ts: i64) -> ServiceResult<Secret> {
    let secret = opaque::generate(opaque::CLIENT_SECRET_PREFIX);
    let row = ClientSecret {
        id: random_id("sec_"),
        client_id: client_id.to_string(),
        secret_hash: secret.hash(),
        created_at: ts,
        expires_at: None,
    };
    store::insert_secret(conn, &row)?;
    Ok(secret)
}

/// A new API token string for `client`, stored as its hash. Its expiry is
/// `lifetime` from now, never past the client's own `expires_at`.
pub fn insert_api_token(
    conn: &mut AnyConnection,
    client: &Client,
    scope: &str,
    audience: &[String],
    tenant_id: &str,
    ts: i64,
) -> ServiceResult<(ApiTokenRow, Secret)> {
    let token = opaque::generate(opaque::API_TOKEN_PREFIX);
    let mut expires_at = ts + client.token_lifetime;
    if let Some(limit) = client.expires_at {
        expires_at = expires_at.min(limit);
    }
    let row = ApiTokenRow {
        id: format!(
            "tok_{}",
            opaque::time_ordered_id(chrono::Utc::now().timestamp_millis())
        ),
        client_id: client.client_id.to_string(),
        token_hash: token.hash(),
        prefix: display_prefix(token.expose()),
        scope: scope.to_string(),
        audience: serde_json::to_string(audience)
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        tenant_id: tenant_id.to_string(),
        issued_at: ts,
        expires_at,
        revoked_at: None,
    };
    store_api_tokens::insert(conn, &row)?;
    Ok((row, token))
}

pub fn register(
    conn: &mut Conn<'_>,
    actor: &Actor,
    req: NewClient,
) -> ServiceResult<(ClientView, IssuedCredential)> {
    conn.write(|tx| register_in(tx, actor, req))
}

/// `register` inside a transaction the caller holds (the bootstrap makes the
/// root tenant and its admin in one).
pub fn register_in(
    tx: &mut Tx<'_>,
    actor: &Actor,
    req: NewClient,
) -> ServiceResult<(ClientView, IssuedCredential)> {
    let ts = now();
    let name = tenants::validate_name(&req.name)?;
    let kind = match req.kind.as_deref() {
        None => ClientKind::ClientCredentials,
        Some(text) => text.parse::<ClientKind>().map_err(|_| {
            ServiceError::Invalid(format!(
                "kind {text:?} is not one of client_credentials, api_token"
            ))
        })?,
    };
    let description = optional_text("description", req.description.as_deref(), 2000)?;
    let owner = optional_text("owner", req.owner.as_deref(), 200)?;
    let owner_email = match req.owner_email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) => Some(tenants::validate_email(e)?),
    };
    let expires_at = resolve_expiry(req.expires_at.as_deref(), req.expires_in.as_ref(), ts)?;
    let access_token_ttl = validate_access_token_ttl(
        req.access_token_ttl
            .unwrap_or(durations::ACCESS_TOKEN_TTL_DEFAULT),
    )?;
    let token_lifetime = match &req.token_lifetime {
        Some(spec) => validate_token_lifetime(spec)?,
        None => durations::TOKEN_LIFETIME_DEFAULT,
    };
    let allowed_ips = validate_allowed_ips(req.allowed_ips.as_deref().unwrap_or(&[]))?;
    let audience = validate_audience(req.audience.as_deref().unwrap_or(&[]))?;
    let metadata = Metadata::new(req.metadata.clone().unwrap_or_default());
    let auth_method = client_keys::parse_method(req.token_endpoint_auth_method.as_deref())?;
    let jwks = req.jwks.as_ref().map(client_keys::parse_jwks).transpose()?;
    let jwks_uri = req
        .jwks_uri
        .as_deref()
        .map(client_keys::parse_jwks_uri)
        .transpose()?;
    let requested_scopes = match &req.scopes {
        Some(list) => Some(
            ScopeSet::from_tokens(list.iter().map(String::as_str))
                .map_err(|e| ServiceError::Invalid(format!("scopes: {e}")))?,
        ),
        None => None,
    };

    {
        let tenant_id = req
            .tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone());
        let tenant = tenants::find_reachable(tx, actor, &tenant_id)?;
        let role = policy::assignable_role(tx, actor, &req.role, &tenant.path)?;
        let role_scopes = ScopeSet::parse(&role.scopes).map_err(ServiceError::Internal)?;
        let scopes = match &requested_scopes {
            Some(asked) => {
                let missing = asked.missing_from(&role_scopes);
                if !missing.is_empty() {
                    return Err(ServiceError::Invalid(format!(
                        "scopes not in role {:?}: {}",
                        role.name,
                        missing.join(" ")
                    )));
                }
                asked.clone()
            }
            None => role_scopes,
        };
        // The role counts as well as the scopes: `{"role": "admin",
        // "scopes": []}` still carries `"role": "admin"` in every token.
        let rights = policy::rights(&scopes, &role)?;
        policy::require_within(actor, &rights, "the new client")?;
        if let Some(group_id) = &req.device_group_id {
            let group_tenant = store_device_groups::tenant_of(tx, group_id)?;
            if group_tenant.as_deref() != Some(tenant.id.as_str()) {
                return Err(ServiceError::NotFound("device group"));
            }
        }
        let federated_subjects = client_keys::parse_subjects(
            tx,
            &tenant.path,
            req.federated_subjects.as_deref().unwrap_or(&[]),
        )?;
        client_keys::check_combination(
            kind,
            auth_method,
            jwks.as_ref(),
            jwks_uri.as_deref(),
            &federated_subjects,
        )?;
        let client = Client {
            client_id: ClientId::from(random_id(opaque::CLIENT_ID_PREFIX)),
            kind,
            name: name.clone(),
            description: description.clone(),
            tenant_id: tenant.id.clone(),
            role: role.name.clone(),
            scopes,
            device_group_id: req.device_group_id.clone(),
            owner: owner.clone(),
            owner_email: owner_email.clone(),
            status: ClientStatus::Active,
            expires_at,
            can_renew: req.can_renew.unwrap_or(false),
            allowed_ips: allowed_ips.clone(),
            access_token_ttl,
            token_lifetime,
            audience: audience.clone(),
            metadata: metadata.clone(),
            created_at: ts,
            updated_at: ts,
            revoked_at: None,
            last_used_at: None,
            version: 1,
            user_id: None,
            auth_method,
            jwks,
            jwks_uri,
            federated_subjects,
        };
        store::insert(tx, &client)?;
        // Nodes that remembered this id as unknown must forget that.
        tx.announce(Change::Client(client.client_id.to_string()))?;
        let credential = if kind == ClientKind::ApiToken {
            let (row, token) = insert_api_token(
                tx,
                &client,
                &client.scopes.to_string(),
                audience.as_slice(),
                &client.tenant_id,
                ts,
            )?;
            IssuedCredential::ApiToken {
                token,
                expires_at: row.expires_at,
            }
        } else if auth_method.uses_secret() {
            IssuedCredential::ClientSecret(insert_secret(tx, &client.client_id, ts)?)
        } else {
            IssuedCredential::Nothing
        };
        audit::record(
            tx,
            actor,
            "client.create",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({
                "name": client.name, "kind": client.kind, "role": client.role,
                "scopes": client.scopes.to_string(),
                "token_endpoint_auth_method": client.auth_method,
                "jwks_uri": client.jwks_uri,
                "federated_subjects": client.federated_subjects,
            }),
        )?;
        Ok((ClientView::new(&client, ts), credential))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    /// One of the four statuses, `all`, or None for all but revoked.
    pub status: Option<String>,
    pub kind: Option<String>,
    pub tenant_id: Option<String>,
    pub role: Option<String>,
    /// Only this person's personal key.
    pub user_id: Option<String>,
}

pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    filter: &ClientFilter,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<ClientView>> {
    let ts = now();
    let status = filter.status.as_deref();
    if let Some(s) = status {
        if ![
            STATUS_ACTIVE,
            STATUS_DISABLED,
            STATUS_REVOKED,
            STATUS_EXPIRED,
            "all",
        ]
        .contains(&s)
        {
            return Err(ServiceError::Invalid(format!(
                "status {s:?} is not one of active, disabled, revoked, expired, all"
            )));
        }
    }
    // A mistyped kind would otherwise answer an empty list, as if no client
    // of that kind existed.
    if let Some(kind) = filter.kind.as_deref() {
        if ![KIND_CLIENT_CREDENTIALS, KIND_API_TOKEN].contains(&kind) {
            return Err(ServiceError::Invalid(format!(
                "kind {kind:?} is not one of client_credentials, api_token"
            )));
        }
    }
    let status = match status {
        None => StatusFilter::NotRevoked,
        Some("all") => StatusFilter::All,
        Some(STATUS_ACTIVE) => StatusFilter::Active,
        Some(STATUS_DISABLED) => StatusFilter::Disabled,
        Some(STATUS_REVOKED) => StatusFilter::Revoked,
        Some(_) => StatusFilter::Expired,
    };
    let stored = ListFilter {
        status,
        kind: filter.kind.clone(),
        tenant_id: filter.tenant_id.clone(),
        role: filter.role.clone(),
        user_id: filter.user_id.clone(),
    };
    Ok(
        store::list_under(conn, &actor.tenant_path, &stored, ts, limit, after)?
            .iter()
            .map(|c| ClientView::new(c, ts))
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Disable,
    Enable,
    Revoke,
}

/// Disable, enable or revoke. A revoked client is final: any change is a
/// conflict. Each change bumps `version` and is audited in its transaction.
pub fn change_status(
    conn: &mut Conn<'_>,
    actor: &Actor,
    client_id: &str,
    change: StatusChange,
) -> ServiceResult<ClientView> {
    let action = match change {
        StatusChange::Disable => ClientAction::Disable,
        StatusChange::Enable => ClientAction::Enable,
        StatusChange::Revoke => ClientAction::Revoke,
    };
    conn.write(|tx| {
        let mut client = policy::client_for(tx, actor, client_id, action)?;
        reject_if_revoked(&client)?;
        let ts = now();
        let (status, action) = match change {
            StatusChange::Disable => (ClientStatus::Disabled, "client.disable"),
            StatusChange::Enable => (ClientStatus::Active, "client.enable"),
            StatusChange::Revoke => (ClientStatus::Revoked, "client.revoke"),
        };
        client.status = status;
        if change == StatusChange::Revoke {
            client.revoked_at = Some(ts);
        }
        bump_version(tx, &mut client, ts)?;
        store::set_status(tx, &client)?;
        tx.announce(Change::Client(client.client_id.to_string()))?;
        audit::record(
            tx,
            actor,
            action,
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({}),
        )?;
        Ok(ClientView::new(&client, ts))
    })
}

/// The client, plus its credential this once: the answer to a creation, a
/// new secret or a reissue (HTTP and CLI alike).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    /// Kind client_credentials: the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub client_secret: Option<String>,
    /// Kind api_token: the token and its expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String, format = DateTime)]
    pub token_expires_at: Option<String>,
}

/// Merges a client view with the credential shown this once, for the 201.
pub fn with_credential(view: &ClientView, credential: &IssuedCredential) -> CreatedClient {
    let mut created = CreatedClient {
        client: view.clone(),
        client_secret: None,
        token: None,
        token_expires_at: None,
    };
    match credential {
        IssuedCredential::ClientSecret(secret) => {
            created.client_secret = Some(secret.expose().to_string());
        }
        IssuedCredential::ApiToken { token, expires_at } => {
            created.token = Some(token.expose().to_string());
            created.token_expires_at = Some(rfc3339(*expires_at));
        }
        IssuedCredential::Nothing => {}
    }
    created
}

/// Claims the client row for this change: bumps `version` only if nobody
/// else changed the client since it was read. Two concurrent changes thus
/// either apply one after the other or the second gets a 409; none is lost.
pub(crate) fn bump_version(
    conn: &mut AnyConnection,
    client: &mut Client,
    ts: i64,
) -> ServiceResult<()> {
    if !store::claim_version(conn, &client.client_id, client.version, ts)? {
        return Err(ServiceError::Conflict(
            "the client was changed by another request at the same time; read it again and retry"
                .into(),
        ));
    }
    client.version += 1;
    client.updated_at = ts;
    Ok(())
}

fn reject_if_revoked(client: &Client) -> ServiceResult<()> {
    if client.status == ClientStatus::Revoked {
        Err(ServiceError::Conflict(
            "the client is revoked; revocation is final".into(),
        ))
    } else {
        Ok(())
    }
}

/// PATCH: changes only the fields given; `null` clears a nullable one.
/// Fields are checked in alphabetical order, so the first fault reported is
/// the same whatever order the body had.
pub fn update(
    conn: &mut Conn<'_>,
    actor: &Actor,
    client_id: &str,
    patch: ClientPatch,
) -> ServiceResult<ClientView> {
    if let Some(field) = patch.fixed_field() {
        return Err(ServiceError::Invalid(format!(
            "{field} cannot change after creation; register a new client instead"
        )));
    }
    if patch.expires_at.is_some() && patch.expires_in.is_some() {
        return Err(ServiceError::Invalid(
            "give expires_at or expires_in, not both".into(),
        ));
    }
    let fields = patch.fields();
    conn.write(|tx| {
        let mut client = policy::client_for(tx, actor, client_id, ClientAction::Change)?;
        reject_if_revoked(&client)?;
        let ts = now();
        if let Some(ttl) = patch.access_token_ttl {
            client.access_token_ttl = validate_access_token_ttl(ttl)?;
        }
        if let Some(list) = &patch.allowed_ips {
            client.allowed_ips = validate_allowed_ips(list)?;
        }
        if let Some(list) = &patch.audience {
            client.audience = validate_audience(list)?;
        }
        if let Some(can_renew) = patch.can_renew {
            client.can_renew = can_renew;
        }
        if let Some(text) = &patch.description {
            client.description = optional_text("description", text.as_deref(), 2000)?;
        }
        if let Some(at) = &patch.expires_at {
            client.expires_at = match at {
                Some(at) => resolve_expiry(Some(at), None, ts)?,
                None => None,
            };
        }
        if let Some(spec) = &patch.expires_in {
            client.expires_at = resolve_expiry(None, Some(spec), ts)?;
        }
        if let Some(metadata) = &patch.metadata {
            client.metadata = Metadata::new(metadata.clone());
        }
        if let Some(name) = &patch.name {
            client.name = tenants::validate_name(name)?;
        }
        if let Some(text) = &patch.owner {
            client.owner = optional_text("owner", text.as_deref(), 200)?;
        }
        if let Some(text) = &patch.owner_email {
            client.owner_email = match optional_text("owner_email", text.as_deref(), 254)? {
                Some(email) => Some(tenants::validate_email(&email)?),
                None => None,
            };
        }
        if let Some(spec) = &patch.token_lifetime {
            client.token_lifetime = validate_token_lifetime(spec)?;
        }
        if let Some(jwks) = &patch.jwks {
            client.jwks = jwks.as_ref().map(client_keys::parse_jwks).transpose()?;
        }
        if let Some(uri) = &patch.jwks_uri {
            client.jwks_uri = uri
                .as_deref()
                .map(client_keys::parse_jwks_uri)
                .transpose()?;
        }
        if let Some(list) = &patch.federated_subjects {
            let path = crate::store::tenants::path_of(tx, &client.tenant_id)?
                .ok_or(ServiceError::NotFound("tenant"))?;
            client.federated_subjects = client_keys::parse_subjects(tx, &path, list)?;
        }
        client_keys::check_combination(
            client.kind,
            client.auth_method,
            client.jwks.as_ref(),
            client.jwks_uri.as_deref(),
            &client.federated_subjects,
        )?;
        bump_version(tx, &mut client, ts)?;
        store::save(tx, &client)?;
        tx.announce(Change::Client(client.client_id.to_string()))?;
        audit::record(
            tx,
            actor,
            "client.update",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({ "fields": fields }),
        )?;
        Ok(ClientView::new(&client, ts))
    })
}

/// Deletes a client that is not active (Qualytics: "You can only delete
/// revoked tokens"). Its secrets and API tokens go with it; the audit log
/// keeps that it existed.
pub fn delete(conn: &mut Conn<'_>, actor: &Actor, client_id: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let client = policy::client_for(tx, actor, client_id, ClientAction::Delete)?;
        // A personal key may go even while active (API.md section 4): its
        // person's access is what an admin is taking away.
        if status_of(&client, now()) == STATUS_ACTIVE && client.user_id.is_none() {
            return Err(ServiceError::Conflict(
                "an active client cannot be deleted; disable or revoke it first".into(),
            ));
        }
        if actor.is_client(&client.client_id) {
            return Err(ServiceError::Conflict(
                "a client cannot delete itself".into(),
            ));
        }
        tx.announce(Change::Client(client.client_id.to_string()))?;
        audit::record(
            tx,
            actor,
            "client.delete",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"name": client.name, "kind": client.kind}),
        )?;
        store::delete(tx, &client.client_id)?;
        Ok(())
    })
}

pub const MAX_GRACE_SECONDS: i64 = 604_800;

/// A new secret (AirVantage's "regenerate"). The old ones stop at once, or
/// after `grace_seconds` for a rotation without downtime.
pub fn rotate_secret(
    conn: &mut Conn<'_>,
    actor: &Actor,
    client_id: &str,
    grace_seconds: i64,
) -> ServiceResult<(ClientView, Secret)> {
    if !(0..=MAX_GRACE_SECONDS).contains(&grace_seconds) {
        return Err(ServiceError::Invalid(format!(
            "grace_seconds must be between 0 and {MAX_GRACE_SECONDS}"
        )));
    }
    conn.write(|tx| {
        let mut client = policy::client_for(tx, actor, client_id, ClientAction::NewSecret)?;
        reject_if_revoked(&client)?;
        // A personal key's secret is its person's alone (API.md section 4):
        // other admins may disable or delete it, never hold it.
        if let Some(owner) = &client.user_id {
            if actor.user_id.as_deref() != Some(owner.as_str()) {
                return Err(ServiceError::Forbidden(
                    "only its user makes a new secret for a personal API access key".into(),
                ));
            }
        }
        if client.kind != ClientKind::ClientCredentials {
            return Err(ServiceError::Invalid(
                "an api_token client has no secret; reissue its token instead".into(),
            ));
        }
        if !client.auth_method.uses_secret() {
            return Err(ServiceError::Invalid(
                "a private_key_jwt client has no secret; it signs client assertions with its keys"
                    .into(),
            ));
        }
        let ts = now();
        bump_version(tx, &mut client, ts)?;
        if grace_seconds == 0 {
            store::drop_secrets(tx, &client.client_id)?;
        } else {
            store::start_grace(tx, &client.client_id, ts, ts + grace_seconds)?;
        }
        let secret = insert_secret(tx, &client.client_id, ts)?;
        tx.announce(Change::Client(client.client_id.to_string()))?;
        audit::record(
            tx,
            actor,
            "client.secret.rotate",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"grace_seconds": grace_seconds}),
        )?;
        Ok((ClientView::new(&client, ts), secret))
    })
}

/// Ardexa's "reissue": a new token string with a new expiry and the client's
/// current settings. Earlier strings keep working until their own expiry.
pub fn reissue_token(
    conn: &mut Conn<'_>,
    actor: &Actor,
    client_id: &str,
) -> ServiceResult<(ClientView, Secret, i64)> {
    conn.write(|tx| {
        let mut client = policy::client_for(tx, actor, client_id, ClientAction::Reissue)?;
        reject_if_revoked(&client)?;
        if client.kind != ClientKind::ApiToken {
            return Err(ServiceError::Invalid(
                "a client_credentials client has no API token; make it a new secret instead".into(),
            ));
        }
        let ts = now();
        if status_of(&client, ts) == STATUS_EXPIRED {
            return Err(ServiceError::Conflict(
                "the client has expired; move its expires_at first".into(),
            ));
        }
        bump_version(tx, &mut client, ts)?;
        let (row, token) = insert_api_token(
            tx,
            &client,
            &client.scopes.to_string(),
            client.audience.as_slice(),
            &client.tenant_id,
            ts,
        )?;
        audit::record(
            tx,
            actor,
            "client.token.reissue",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"token_id": row.id, "prefix": row.prefix}),
        )?;
        Ok((ClientView::new(&client, ts), token, row.expires_at))
    })
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub prefix: String,
    pub issued_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

/// The client's API token strings, oldest first, without their values.
pub fn list_tokens(
    conn: &mut AnyConnection,
    actor: &Actor,
    client_id: &str,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<ApiTokenView>> {
    let client = find_reachable(conn, actor, client_id)?;
    Ok(
        store_api_tokens::list_for(conn, &client.client_id, limit, after)?
            .into_iter()
            .map(|t| ApiTokenView {
                id: t.id,
                prefix: t.prefix,
                issued_at: rfc3339(t.issued_at),
                expires_at: rfc3339(t.expires_at),
                revoked_at: t.revoked_at.map(rfc3339),
            })
            .collect(),
    )
}

//! Trusted issuers (API.md section 3): external issuers whose tokens a
//! tenant's clients may present as client assertions (workload identity
//! federation: a Kubernetes cluster's service-account issuer, a CI system's
//! OIDC issuer, a SPIFFE trust domain). A record belongs to a tenant; only
//! clients of that tenant's subtree can name the issuer.

use serde::{Deserialize, Serialize};

use super::{audit, now, rfc3339, tenants, Actor, ServiceError, ServiceResult};
use crate::assertions::key_cache::{KeyCache, KeySource};
use crate::store::changes::Change;
use crate::store::models::TrustedIssuer;
use crate::store::trusted_issuers as store;
use crate::store::{AnyConnection, Conn};
use crate::tokens::opaque::random_id;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrustedIssuerView {
    pub id: String,
    pub issuer: String,
    /// Where its keys come from; null: its discovery document's `jwks_uri`.
    pub jwks_uri: Option<String>,
    pub tenant_id: String,
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&TrustedIssuer> for TrustedIssuerView {
    fn from(t: &TrustedIssuer) -> Self {
        TrustedIssuerView {
            id: t.id.clone(),
            issuer: t.issuer.clone(),
            jwks_uri: t.jwks_uri.clone(),
            tenant_id: t.tenant_id.clone(),
            description: t.description.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrustedIssuer {
    /// The `iss` its tokens carry, exactly (such as
    /// `https://token.actions.githubusercontent.com`).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub issuer: String,
    /// Its JWK Set; absent: from `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    #[schema(pattern = r"^https://[^\s/?#@]+[^\s]*$", max_length = 2000)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// The issuer as tokens carry it: 1 to 500 characters, no whitespace or
/// control characters. Without a `jwks_uri` its keys come from discovery,
/// so it must then be a URL the fetch rules allow.
fn validate(req: &NewTrustedIssuer) -> ServiceResult<(String, Option<String>, Option<String>)> {
    let issuer = req.issuer.trim();
    if issuer.is_empty()
        || issuer.len() > 500
        || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ServiceError::Invalid(
            "issuer must be 1 to 500 characters without spaces".into(),
        ));
    }
    let jwks_uri = req
        .jwks_uri
        .as_deref()
        .map(super::client_keys::parse_jwks_uri)
        .transpose()?;
    if jwks_uri.is_none() && !issuer.starts_with("https://") && !issuer.starts_with("http://") {
        return Err(ServiceError::Invalid(
            "an issuer that is not a URL needs a jwks_uri (its keys cannot be discovered)".into(),
        ));
    }
    let description = match req.description.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) if d.chars().count() > 2000 => {
            return Err(ServiceError::Invalid(
                "description is longer than 2000 characters".into(),
            ))
        }
        Some(d) => Some(d.to_string()),
    };
    Ok((issuer.to_string(), jwks_uri, description))
}

/// Fetches the issuer's keys as registration does (API.md section 3): an
/// issuer whose keys cannot be fetched or parsed is a 400 naming why. Runs
/// before the change's transaction; blocking.
pub fn check_keys(keys: &KeyCache, req: &NewTrustedIssuer) -> ServiceResult<()> {
    let (issuer, jwks_uri, _) = validate(req)?;
    let source = KeySource::for_issuer(&issuer, jwks_uri.as_deref());
    let url = match &source {
        KeySource::JwksUri(uri) => uri.clone(),
        KeySource::Discovery(issuer) => issuer.clone(),
    };
    keys.fetcher()
        .check_url(&url)
        .map_err(|e| ServiceError::Invalid(format!("the issuer's keys cannot be fetched: {e}")))?;
    keys.fetch_for_registration(&source)
        .map(|_| ())
        .map_err(|e| {
            ServiceError::Invalid(format!(
                "the issuer's keys could not be fetched or parsed: {e}"
            ))
        })
}

pub fn create(
    conn: &mut Conn<'_>,
    actor: &Actor,
    req: NewTrustedIssuer,
) -> ServiceResult<TrustedIssuerView> {
    let (issuer, jwks_uri, description) = validate(&req)?;
    conn.write(|tx| {
        let tenant_id = req
            .tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone());
        let tenant = tenants::find_reachable(tx, actor, &tenant_id)?;
        if store::taken(tx, &tenant.id, &issuer)? {
            return Err(ServiceError::Conflict(format!(
                "the tenant already trusts {issuer:?}"
            )));
        }
        let ts = now();
        let row = TrustedIssuer {
            id: random_id("iss_"),
            tenant_id: tenant.id.to_string(),
            issuer: issuer.clone(),
            jwks_uri: jwks_uri.clone(),
            description: description.clone(),
            created_at: ts,
            updated_at: ts,
        };
        store::insert(tx, &row)?;
        tx.announce(Change::TrustedIssuers)?;
        audit::record(
            tx,
            actor,
            "trusted_issuer.create",
            Some(&row.id),
            Some(&row.tenant_id),
            serde_json::json!({"issuer": row.issuer, "jwks_uri": row.jwks_uri}),
        )?;
        Ok(TrustedIssuerView::from(&row))
    })
}

/// The record, if it belongs to a tenant the actor reaches; NotFound
/// otherwise.
pub fn find_reachable(
    conn: &mut AnyConnection,
    actor: &Actor,
    id: &str,
) -> ServiceResult<(TrustedIssuer, String)> {
    match store::find_with_path(conn, id)? {
        Some((row, path)) if actor.can_reach(&path) => Ok((row, path)),
        _ => Err(ServiceError::NotFound("trusted issuer")),
    }
}

pub fn get(conn: &mut AnyConnection, actor: &Actor, id: &str) -> ServiceResult<TrustedIssuerView> {
    find_reachable(conn, actor, id).map(|(row, _)| TrustedIssuerView::from(&row))
}

pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<TrustedIssuerView>> {
    Ok(store::list_under(conn, &actor.tenant_path, limit, after)?
        .iter()
        .map(TrustedIssuerView::from)
        .collect())
}

/// Removes the record; 409 while a client of the tenant's subtree names
/// the issuer in its federated subjects (remove those first), so no client
/// loses its way in unannounced.
pub fn delete(conn: &mut Conn<'_>, actor: &Actor, id: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let (row, path) = find_reachable(tx, actor, id)?;
        if store::in_use_under(tx, &row.issuer, &path)? {
            return Err(ServiceError::Conflict(
                "clients of this tenant's subtree name this issuer in their federated_subjects; remove those first".into(),
            ));
        }
        store::delete(tx, &row.id)?;
        tx.announce(Change::TrustedIssuers)?;
        audit::record(
            tx,
            actor,
            "trusted_issuer.delete",
            Some(&row.id),
            Some(&row.tenant_id),
            serde_json::json!({"issuer": row.issuer}),
        )
    })
}

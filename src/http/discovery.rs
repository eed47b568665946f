//! RFC 8414 metadata and the RFC 7517 JWKS.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::oauth::OAuthError;

/// The roles' scopes last read, for when the store is out of reach:
/// discovery keeps answering through a store outage (clients fetch it to
/// find the token endpoint, and a 503 there would turn a brief outage into
/// failed deployments).
static LAST_ROLE_SCOPES: std::sync::RwLock<Option<Vec<String>>> = std::sync::RwLock::new(None);

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery", responses((status = 200, body = ServerMetadata)))]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let loaded = state
        .db
        .run(|conn| crate::store::roles::all_scopes(conn).map_err(OAuthError::from))
        .await;
    let role_scopes: Option<Vec<String>> = match loaded {
        Ok(scopes) => {
            if let Ok(mut last) = LAST_ROLE_SCOPES.write() {
                *last = Some(scopes.clone());
            }
            Some(scopes)
        }
        // The last list seen, or none: `scopes_supported` is only
        // RECOMMENDED (RFC 8414 section 2).
        Err(e) if crate::store::StoreFailure::is_unavailable(&e) => {
            LAST_ROLE_SCOPES.read().ok().and_then(|last| last.clone())
        }
        Err(e) => return Err(e),
    };
    let scopes: Option<BTreeSet<&str>> = role_scopes.as_ref().map(|role_scopes| {
        role_scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .collect()
    });
    let issuer = &state.issuer;
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    // Introspection and revocation also take one of this server's tokens as
    // a bearer credential.
    let caller_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "bearer",
    ];
    let endpoint = |path: &str| format!("{issuer}{path}");
    let body = ServerMetadata {
        issuer: issuer.clone(),
        token_endpoint: endpoint("/oauth/token"),
        jwks_uri: endpoint("/.well-known/jwks.json"),
        introspection_endpoint: endpoint("/oauth/introspect"),
        revocation_endpoint: endpoint("/oauth/revoke"),
        renewal_endpoint: endpoint("/api/v1/token/renew"),
        grant_types_supported: vec!["client_credentials"],
        response_types_supported: Vec::new(),
        token_endpoint_auth_methods_supported: auth_methods.to_vec(),
        introspection_endpoint_auth_methods_supported: caller_methods.to_vec(),
        revocation_endpoint_auth_methods_supported: caller_methods.to_vec(),
        token_endpoint_auth_signing_alg_values_supported:
            crate::assertions::jwks::SIGNING_ALGORITHMS.to_vec(),
        access_token_signing_alg_values_supported: vec![state
            .keys
            .current()
            .signing
            .alg
            .as_str()
            .to_string()],
        scopes_supported: scopes.map(|s| s.into_iter().map(str::to_string).collect()),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body))
}

/// RFC 8414 section 2 (and `renewal_endpoint`, this server's own).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub renewal_endpoint: String,
    #[schema(value_type = Vec<String>)]
    pub grant_types_supported: Vec<&'static str>,
    #[schema(value_type = Vec<String>)]
    pub response_types_supported: Vec<&'static str>,
    #[schema(value_type = Vec<String>)]
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    #[schema(value_type = Vec<String>)]
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    #[schema(value_type = Vec<String>)]
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    #[schema(value_type = Vec<String>)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub access_token_signing_alg_values_supported: Vec<String>,
    /// Absent while the store has not been read since the start (it is
    /// RECOMMENDED, not required: RFC 8414 section 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<String>, required = false)]
    pub scopes_supported: Option<Vec<String>>,
}

/// RFC 7517: every key that can verify a token not yet expired.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery", responses((status = 200, body = Object)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.keys.current();
    HttpResponse::Ok()
        .content_type("application/json")
        // Short: a rotated key must reach verifiers well within its overlap.
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(keys.jwks_json.clone())
}

/// The same document at the OpenID Connect path.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery", responses((status = 200, body = ServerMetadata)))]
pub async fn openid_configuration(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    metadata(state).await
}

//! RFC 8414 metadata and the RFC 7517 JWKS.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use diesel::prelude::*;

use super::AppState;
use crate::oauth::OAuthError;
use crate::store::schema::roles;

/// The roles' scopes last read, for when the store is out of reach:
/// discovery keeps answering through a store outage (clients fetch it to
/// find the token endpoint, and a 503 there would turn a brief outage into
/// failed deployments).
static LAST_ROLE_SCOPES: std::sync::RwLock<Option<Vec<String>>> = std::sync::RwLock::new(None);

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery", responses((status = 200, body = Object), (status = 503, description = "temporarily_unavailable: the store is unreachable", body = crate::http::openapi::ErrorBody)))]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let loaded = state
        .db
        .run(|conn| {
            roles::table
                .select(roles::scopes)
                .load::<String>(conn)
                .map_err(OAuthError::from)
        })
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
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    // Introspection and revocation also take one of this server's tokens as
    // a bearer credential.
    let caller_methods = ["client_secret_basic", "client_secret_post", "bearer"];
    let mut body = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "renewal_endpoint": format!("{issuer}/api/v1/token/renew"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": caller_methods,
        "revocation_endpoint_auth_methods_supported": caller_methods,
        "token_endpoint_auth_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": [state.keys.current().signing.alg.as_str()],
    });
    if let Some(scopes) = scopes {
        body["scopes_supported"] = serde_json::json!(scopes);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body))
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
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery", responses((status = 200, body = Object), (status = 503, description = "temporarily_unavailable: the store is unreachable", body = crate::http::openapi::ErrorBody)))]
pub async fn openid_configuration(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    metadata(state).await
}

//! The token endpoint: the client-credentials grant (RFC 6749 4.4).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{client_ip, no_store_json, AppState};
use crate::oauth::authenticate::{Credential, Endpoint};
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::service::now;
use crate::service::scopes::ScopeSet;
use crate::tokens::jwt::{self, AccessClaims, Audience};

/// The client-credentials grant (RFC 6749 4.4).
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(content = crate::http::openapi::TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_scope, invalid_target, unsupported_grant_type or unauthorized_client", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "invalid_client", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "slow_down: too many failed authentications from this address (Retry-After)", body = crate::http::openapi::ErrorBody),
        (status = 500, description = "server_error: logged with its cause, never shown", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security((), ("client_secret_basic" = []))
)]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload, &["audience", "resource"]).await?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?
        .to_string();
    let ip = client_ip(&req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate(req.headers(), Some(&form), ip, Endpoint::Token)
        .await?;
    let Credential::Client(entry) = &caller.credential else {
        return Err(OAuthError::server_error(
            &"the token endpoint authenticated a caller without a client secret",
        ));
    };
    let now = now();
    if grant_type != "client_credentials" {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {grant_type:?} is not supported; use client_credentials"
        )));
    }

    // RFC 6749 3.3: absent scope means the client's whole scope.
    let client_scopes = &entry.scopes;
    let scope = match form.get("scope") {
        Some(asked) => {
            let asked = ScopeSet::parse(asked).map_err(OAuthError::invalid_scope)?;
            let missing = asked.missing_from(client_scopes);
            if !missing.is_empty() {
                return Err(OAuthError::invalid_scope(format!(
                    "scope not granted to this client: {}",
                    missing.join(" ")
                )));
            }
            asked
        }
        None => (**client_scopes).clone(),
    };

    // RFC 8707: `resource` and `audience` each name a target.
    let allowed_audience = entry.audience();
    let mut audience: Vec<String> = Vec::new();
    for target in form.get_all("audience").chain(form.get_all("resource")) {
        // The issuer is always allowed: a client whose audiences name only
        // resource servers can still get a token for keyward's own endpoints.
        if target != state.issuer && !allowed_audience.iter().any(|a| a == target) {
            return Err(OAuthError::invalid_target(format!(
                "{target:?} is not an audience of this client"
            )));
        }
        if !audience.iter().any(|a| a == target) {
            audience.push(target.to_string());
        }
    }
    if audience.is_empty() {
        audience = if allowed_audience.is_empty() {
            vec![state.issuer.clone()]
        } else {
            allowed_audience.to_vec()
        };
    }

    let tenant_id = match form.get("tenant") {
        None => entry.tenant_id().to_string(),
        Some(asked) => match state.directory.tenant_path(&state.db, asked).await? {
            Some(path) if path.starts_with(entry.tenant_path()) => asked.to_string(),
            _ => {
                return Err(OAuthError::invalid_request(format!(
                    "tenant {asked:?} is not this client's tenant or one below it"
                )))
            }
        },
    };

    let mut exp = now + entry.access_token_ttl;
    if let Some(limit) = entry.expires_at {
        exp = exp.min(limit);
    }
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        sub: entry.client_id.to_string(),
        client_id: entry.client_id.to_string(),
        aud: Audience::from_list(audience),
        iat: now,
        exp,
        jti: jwt::new_jti(),
        scope: scope.to_string(),
        role: entry.role().to_string(),
        tenant: tenant_id,
        device_group: entry.device_group_id().map(str::to_string),
    };
    let access_token =
        jwt::sign(&state.keys.current(), &claims).map_err(|e| OAuthError::server_error(&e))?;
    state.last_used.record(&entry.client_id, now);
    crate::metrics::TOKENS_ISSUED
        .with_label_values(&["access_token"])
        .inc();
    Ok(no_store_json(&TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: exp - now,
        scope: claims.scope,
    }))
}

/// RFC 6749 5.1.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    pub scope: String,
}

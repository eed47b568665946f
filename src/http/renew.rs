//! Renewal: `GET` or `POST /api/v1/token/renew` with the token to renew as
//! the bearer (Ardexa's "Renew API token", for access tokens too).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{client_ip, no_store_json, AppState};
use crate::oauth::authenticate::{Credential, Endpoint, TokenLookup};
use crate::oauth::OAuthError;
use crate::service::{credentials, now, rfc3339};
use crate::tokens::jwt::{self, AccessClaims};

/// A new token of the same kind, scope, audience and tenant.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/token/renew",
    tag = "oauth",
    responses(
        (status = 200, body = RenewResponse),
        (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "access_denied", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "slow_down: too many failed authentications from this address (Retry-After)", body = crate::http::openapi::ErrorBody),
        (status = 500, description = "server_error: logged with its cause, never shown", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let ip = client_ip(&req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate(req.headers(), None, ip, Endpoint::Renewal)
        .await?;
    let owner = caller.client.clone();
    if !owner.can_renew {
        return Err(OAuthError::access_denied(
            "renewal is not enabled for this client",
        ));
    }
    let found = match &caller.credential {
        Credential::AccessToken(claims, entry) => {
            TokenLookup::Access(claims.clone(), entry.clone())
        }
        Credential::ApiToken(record) => TokenLookup::Api(record.clone()),
        Credential::Client(_) => {
            return Err(OAuthError::invalid_token(
                "send the token to renew as a bearer token",
            ))
        }
    };
    let actor = caller.actor();
    let now = now();
    let issuer = state.issuer.clone();
    let (new_token, expires_at, scope) = match found {
        TokenLookup::Api(record) => {
            let scope = record.token.scope.clone();
            let (row, token) = state
                .db
                .run(move |conn| {
                    credentials::renew_api_token(conn, &actor, &issuer, &record)
                        .map_err(OAuthError::from)
                })
                .await?;
            crate::metrics::TOKENS_ISSUED
                .with_label_values(&["api_token"])
                .inc();
            (token.expose().to_string(), row.expires_at, scope)
        }
        TokenLookup::Access(old, entry) => {
            let mut exp = now + owner.access_token_ttl;
            if let Some(limit) = owner.expires_at {
                exp = exp.min(limit);
            }
            let claims = AccessClaims {
                iat: now,
                exp,
                jti: jwt::new_jti(),
                ..(*old).clone()
            };
            let signed = jwt::sign(&state.keys.current(), &claims)
                .map_err(|e| OAuthError::server_error(&e))?;
            let scope = claims.scope.clone();
            state
                .renewals
                .renew_access_token(actor, &issuer, entry.clone(), old, claims)
                .await?;
            crate::metrics::TOKENS_ISSUED
                .with_label_values(&["access_token"])
                .inc();
            (signed, exp, scope)
        }
    };
    Ok(no_store_json(&RenewResponse {
        access_token: new_token,
        token_type: "Bearer",
        expires_in: expires_at - now,
        expires_at: rfc3339(expires_at),
        scope,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RenewResponse {
    /// The new token, of the same kind as the old one.
    pub access_token: String,
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub scope: String,
}

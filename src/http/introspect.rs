//! Token introspection (RFC 7662).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{client_ip, no_store_json, AppState};
use crate::oauth::authenticate::{Endpoint, TokenLookup};
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::tokens::jwt::Audience;

/// RFC 7662. The caller needs the `introspect` scope.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(content = crate::http::openapi::TokenParamForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "{\"active\": false} for anything not active", body = crate::http::openapi::IntrospectionResponse),
        (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "invalid_client or invalid_token", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(("client_secret_basic" = []), ("bearer" = ["introspect"]))
)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload, &[]).await?;
    let ip = client_ip(&req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate(req.headers(), Some(&form), ip, Endpoint::Introspection)
        .await?;
    if !caller.scopes.contains("introspect") {
        return Err(OAuthError::insufficient_scope(
            "introspection needs the introspect scope",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // token_type_hint is only a hint (RFC 7662 2.1): the token's own shape decides.
    let inactive = || no_store_json(&serde_json::json!({"active": false}));
    let body = match state.auth.active_token(token).await? {
        Some(TokenLookup::Access(claims, owner)) if caller.can_reach(&owner.record.tenant_path) => {
            let mut body = serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "token_kind": "access_token",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "iat": claims.iat,
                "exp": claims.exp,
                "jti": claims.jti,
                "role": claims.role,
                "tenant": claims.tenant,
            });
            if let Some(group) = &claims.device_group {
                body["device_group"] = group.clone().into();
            }
            body
        }
        Some(TokenLookup::Api(record)) if caller.can_reach(&record.owner.tenant_path) => {
            let client = &record.owner.client;
            // Read strictly: an unreadable stored audience is a 500 with its
            // cause logged, never a token that looks issuer-only.
            let audience = crate::domain::Audience::from_json(&record.token.audience)
                .map_err(|e| {
                    OAuthError::server_error(&format!(
                        "stored api_tokens.audience of {} is unreadable: {e}",
                        record.token.id
                    ))
                })?
                .into_vec();
            let audience = if audience.is_empty() {
                Audience::One(state.issuer.clone())
            } else {
                Audience::from_list(audience)
            };
            let mut body = serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "token_kind": "api_token",
                "scope": record.token.scope,
                "client_id": client.client_id,
                "sub": client.client_id,
                "aud": audience,
                "iss": state.issuer,
                "iat": record.token.issued_at,
                "exp": record.token.expires_at,
                "jti": record.token.id,
                "role": client.role,
                "tenant": record.token.tenant_id,
            });
            if let Some(group) = &client.device_group_id {
                body["device_group"] = group.clone().into();
            }
            body
        }
        _ => return Ok(inactive()),
    };
    Ok(no_store_json(&body))
}

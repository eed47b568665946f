//! Token revocation (RFC 7009).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{form_and_caller, AppState};
use crate::oauth::authenticate::{Endpoint, Principal};
use crate::oauth::OAuthError;
use crate::service::clients;
use crate::service::credentials;
use crate::tokens::{jwt, opaque};

/// Whether `caller` may revoke a token of the client `owner_id` in the tenant
/// at `owner_path`: its own, or with `clients:write` any in its subtree.
/// Tokens out of reach answer as unknown ones do, so nothing leaks.
fn may_revoke(caller: &Principal, owner_id: &str, owner_path: &str) -> Result<bool, OAuthError> {
    if owner_id == caller.client_id() {
        return Ok(true);
    }
    if !caller.can_reach(owner_path) {
        return Ok(false);
    }
    if caller.scopes.contains("clients:write") {
        Ok(true)
    } else {
        // RFC 7009 2.1: a token of another client is refused.
        Err(OAuthError::unauthorized_client(
            "the token belongs to another client; revoking it needs clients:write",
        ))
    }
}

/// RFC 7009: 200 with an empty body, also for unknown or already revoked tokens.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    request_body(content = crate::http::openapi::TokenParamForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked (or unknown)"),
        (status = 400, description = "invalid_request or unauthorized_client", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "invalid_client or invalid_token", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "slow_down: too many failed authentications from this address (Retry-After)", body = crate::http::openapi::ErrorBody),
        (status = 500, description = "server_error: logged with its cause, never shown", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(("client_secret_basic" = []), ("bearer" = []))
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (form, caller) = form_and_caller(&req, payload, &state, Endpoint::Revocation).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let actor = caller.actor();
    let done = || HttpResponse::Ok().finish();

    if token.starts_with(opaque::API_TOKEN_PREFIX) {
        let lookup = token.clone();
        let Some((row, owner)) = state
            .db
            .run(move |conn| credentials::find_api_token(conn, &lookup).map_err(OAuthError::from))
            .await?
        else {
            return Ok(done());
        };
        if !may_revoke(&caller, &owner.client.client_id, &owner.tenant_path)? {
            return Ok(done());
        }
        state
            .db
            .run(move |conn| {
                credentials::revoke_api_token(conn, &actor, &row, &owner.client.tenant_id)
                    .map_err(OAuthError::from)
            })
            .await?;
        return Ok(done());
    }

    // An expired or foreign JWT fails verification: already unusable, 200.
    let Some(claims) = jwt::verify(&state.keys, &token, &state.issuer) else {
        return Ok(done());
    };
    let owner_id = claims.client_id.clone();
    let Some((owner, tenant_path)) = state
        .db
        .run(move |conn| clients::find_with_path(conn, &owner_id).map_err(OAuthError::from))
        .await?
    else {
        return Ok(done());
    };
    if !may_revoke(&caller, &owner.client_id, &tenant_path)? {
        return Ok(done());
    }
    state
        .db
        .run(move |conn| {
            credentials::revoke_access_token(conn, &actor, &claims, &owner.tenant_id)
                .map_err(OAuthError::from)
        })
        .await?;
    Ok(done())
}

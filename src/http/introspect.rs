//! Token introspection (RFC 7662).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{form_and_caller, no_store_json, AppState};
use crate::oauth::authenticate::{Endpoint, TokenLookup};
use crate::oauth::OAuthError;
use crate::tokens::jwt::Audience;

/// RFC 7662. The caller needs the `introspect` scope.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(content = crate::http::openapi::TokenParamForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "{\"active\": false} for anything not active", body = IntrospectionResponse),
        (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "invalid_client or invalid_token", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "slow_down: too many failed authentications from this address (Retry-After)", body = crate::http::openapi::ErrorBody),
        (status = 500, description = "server_error: logged with its cause, never shown", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(("client_secret_basic" = []), ("bearer" = ["introspect"]))
)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (form, caller) = form_and_caller(&req, payload, &state, Endpoint::Introspection).await?;
    if !caller.scopes.contains("introspect") {
        return Err(OAuthError::insufficient_scope(
            "introspection needs the introspect scope",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // token_type_hint is only a hint (RFC 7662 2.1): the token's own shape decides.
    let body = match state.auth.active_token(token).await? {
        Some(TokenLookup::Access(claims, owner)) if caller.can_reach(owner.tenant_path()) => {
            IntrospectionResponse {
                active: true,
                token_type: Some("Bearer"),
                token_kind: Some("access_token"),
                scope: Some(claims.scope.clone()),
                client_id: Some(claims.client_id.clone()),
                sub: Some(claims.sub.clone()),
                aud: Some(claims.aud.clone()),
                iss: Some(claims.iss.clone()),
                iat: Some(claims.iat),
                exp: Some(claims.exp),
                jti: Some(claims.jti.clone()),
                role: Some(claims.role.clone()),
                tenant: Some(claims.tenant.clone()),
                device_group: claims.device_group.clone(),
            }
        }
        Some(TokenLookup::Api(record)) if caller.can_reach(record.owner.tenant_path()) => {
            let client = &record.owner;
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
            IntrospectionResponse {
                active: true,
                token_type: Some("Bearer"),
                token_kind: Some("api_token"),
                scope: Some(record.token.scope.clone()),
                client_id: Some(client.client_id.to_string()),
                sub: Some(client.client_id.to_string()),
                aud: Some(audience),
                iss: Some(state.issuer.clone()),
                iat: Some(record.token.issued_at),
                exp: Some(record.token.expires_at),
                jti: Some(record.token.id.clone()),
                role: Some(client.role().to_string()),
                tenant: Some(record.token.tenant_id.clone()),
                device_group: client.device_group_id().map(str::to_string),
            }
        }
        _ => IntrospectionResponse::inactive(),
    };
    Ok(no_store_json(&body))
}

/// RFC 7662 2.2. Inactive: `{"active": false}` and nothing else.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub token_type: Option<&'static str>,
    /// `access_token` or `api_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub token_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub sub: Option<String>,
    /// A string for one audience, an array for several (RFC 7662 2.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, schema_with = audience_schema)]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = i64)]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = i64)]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub device_group: Option<String>,
}

/// `aud`'s two shapes (`tokens::jwt::Audience`).
fn audience_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "A string for one audience, an array for several (RFC 7662 2.2).",
        ))
        .into()
}

impl IntrospectionResponse {
    fn inactive() -> IntrospectionResponse {
        IntrospectionResponse {
            active: false,
            token_type: None,
            token_kind: None,
            scope: None,
            client_id: None,
            sub: None,
            aud: None,
            iss: None,
            iat: None,
            exp: None,
            jti: None,
            role: None,
            tenant: None,
            device_group: None,
        }
    }
}

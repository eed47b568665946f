use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::clients::{
    self, ApiTokenView, ClientFilter, ClientPatch, ClientView, IssuedCredential, NewClient,
    StatusChange,
};
use crate::service::now;

#[utoipa::path(
    post,
    path = "/admin/v1/clients",
    tag = "clients",
    summary = "Register a client; its secret or API token is shown this once",
    request_body = NewClient,
    responses((status = 201, body = crate::service::clients::CreatedClient), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: NewClient = read_json(payload, false).await?;
    check_jwks_uri(&state, body.jwks_uri.as_deref()).await?;
    let (view, credential) = run(&state, move |conn| clients::register(conn, &actor, body)).await?;
    Ok(created(&clients::with_credential(&view, &credential)))
}

#[utoipa::path(
    get,
    path = "/admin/v1/clients",
    tag = "clients",
    summary = "Clients in reach",
    params(crate::http::openapi::PageParams, ("status" = Option<String>, Query, description = "active, disabled, revoked, expired or all; default all but revoked"), ("kind" = Option<String>, Query, description = "client_credentials or api_token"), ("tenant_id" = Option<String>, Query, description = "only this tenant's"), ("role" = Option<String>, Query, description = "only this role"), ("user_id" = Option<String>, Query, description = "only this person's personal API access key")),
    responses((status = 200, body = crate::http::admin::Page<crate::service::clients::ClientView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::ClientsRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let filters = ["status", "kind", "tenant_id", "role", "user_id"];
    let cursor = |c: &ClientView| c.client_id.clone();
    listed(
        &req,
        &state,
        &filters,
        cursor,
        move |conn, query, window| {
            let filter = ClientFilter {
                status: query.get("status"),
                kind: query.get("kind"),
                tenant_id: query.get("tenant_id"),
                role: query.get("role"),
                user_id: query.get("user_id"),
            };
            clients::list(conn, &actor, &filter, window.limit, window.after())
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/admin/v1/clients/{id}",
    tag = "clients",
    summary = "One client",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = ClientView), crate::http::openapi::AdminReadErrors),
)]
pub async fn get(
    Admin { actor, .. }: Admin<scope::ClientsRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let client = run(&state, move |conn| {
        clients::find_reachable(conn, &actor, &id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(ClientView::new(&client, now())))
}

#[utoipa::path(
    patch,
    path = "/admin/v1/clients/{id}",
    tag = "clients",
    summary = "Change the mutable fields",
    request_body = ClientPatch,
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = ClientView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn update(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let patch: ClientPatch = read_json(payload, false).await?;
    check_jwks_uri(&state, patch.jwks_uri.clone().flatten().as_deref()).await?;
    let id = path.into_inner();
    let view = run(&state, move |conn| {
        clients::update(conn, &actor, &id, patch)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A `jwks_uri` being registered is fetched first (API.md section 3), on a
/// thread of its own: an unreachable or unusable one is a 400 naming why.
pub async fn check_jwks_uri(state: &AppState, jwks_uri: Option<&str>) -> Result<(), OAuthError> {
    let Some(uri) = jwks_uri.map(str::to_string) else {
        return Ok(());
    };
    let keys = state.auth.assertion_keys.clone();
    crate::assertions::off_thread(move || crate::service::client_keys::check_jwks_uri(&keys, &uri))
        .await
        .unwrap_or_else(|| {
            Err(crate::service::ServiceError::Invalid(
                "jwks_uri could not be fetched".into(),
            ))
        })
        .map_err(OAuthError::from)
}

async fn change(
    actor: crate::service::Actor,
    path: web::Path<String>,
    state: web::Data<AppState>,
    change: StatusChange,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let view = run(&state, move |conn| {
        clients::change_status(conn, &actor, &id, change)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    post,
    path = "/admin/v1/clients/{id}/disable",
    tag = "clients",
    summary = "Disable (restorable)",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = ClientView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn disable(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    change(actor, path, state, StatusChange::Disable).await
}

#[utoipa::path(
    post,
    path = "/admin/v1/clients/{id}/enable",
    tag = "clients",
    summary = "Enable; unexpired tokens work again",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = ClientView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn enable(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    change(actor, path, state, StatusChange::Enable).await
}

#[utoipa::path(
    post,
    path = "/admin/v1/clients/{id}/revoke",
    tag = "clients",
    summary = "Revoke for good",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = ClientView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn revoke(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    change(actor, path, state, StatusChange::Revoke).await
}

#[utoipa::path(
    delete,
    path = "/admin/v1/clients/{id}",
    tag = "clients",
    summary = "Delete a client that is not active",
    params(("id" = String, Path, description = "the id")),
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::ClientsDelete>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    run(&state, move |conn| clients::delete(conn, &actor, &id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// 0 to 604800; the old secret keeps working this long.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_seconds: i64,
}

#[utoipa::path(
    post,
    path = "/admin/v1/clients/{id}/secret",
    tag = "clients",
    summary = "A new secret; the old one stops at once or after grace_seconds",
    request_body = Option<SecretRequest>,
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = crate::service::clients::CreatedClient), crate::http::openapi::AdminWriteErrors),
)]
pub async fn rotate_secret(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: SecretRequest = read_json(payload, true).await?;
    let id = path.into_inner();
    let (view, secret) = run(&state, move |conn| {
        clients::rotate_secret(conn, &actor, &id, body.grace_seconds)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(clients::with_credential(
            &view,
            &IssuedCredential::ClientSecret(secret),
        )))
}

#[utoipa::path(
    post,
    path = "/admin/v1/clients/{id}/tokens",
    tag = "clients",
    summary = "Reissue: a new API token string; earlier ones work to their expiry",
    params(("id" = String, Path, description = "the id")),
    responses((status = 201, body = crate::service::clients::CreatedClient), crate::http::openapi::AdminWriteErrors),
)]
pub async fn reissue_token(
    Admin { actor, .. }: Admin<scope::ClientsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let (view, token, expires_at) = run(&state, move |conn| {
        clients::reissue_token(conn, &actor, &id)
    })
    .await?;
    Ok(created(&clients::with_credential(
        &view,
        &IssuedCredential::ApiToken { token, expires_at },
    )))
}

#[utoipa::path(
    get,
    path = "/admin/v1/clients/{id}/tokens",
    tag = "clients",
    summary = "The client's API token strings, without their values",
    params(("id" = String, Path, description = "the id"), crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::admin::Page<crate::service::clients::ApiTokenView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list_tokens(
    Admin { actor, .. }: Admin<scope::ClientsRead>,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let cursor = |t: &ApiTokenView| t.id.clone();
    listed(&req, &state, &[], cursor, move |conn, _, window| {
        clients::list_tokens(conn, &actor, &id, window.limit, window.after())
    })
    .await
}

//! People (API.md section 4, "Users"): the same reach and no-escalation
//! rules as clients, decided by the one policy (`service::policy`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::users::{self, NewUser, UserFilter, UserPatch, UserView};

/// A new user, and the one-time setup link when no password was given.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    /// Shown once; valid 24 hours, single use.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub setup_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String, format = DateTime)]
    pub setup_url_expires_at: Option<String>,
}

/// A new one-time setup link (the older one stops).
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewSetupLink {
    pub setup_url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[utoipa::path(
    post,
    path = "/admin/v1/users",
    tag = "users",
    summary = "Create a user; without a password, a one-time setup link is shown this once",
    request_body = NewUser,
    responses((status = 201, body = CreatedUser), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::UsersWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: NewUser = read_json(payload, false).await?;
    let (user, link) = run(&state, move |conn| users::create(conn, &actor, body)).await?;
    Ok(created(&CreatedUser {
        user,
        setup_url: link.as_ref().map(|l| l.url(&state.issuer)),
        setup_url_expires_at: link.map(|l| crate::service::rfc3339(l.expires_at)),
    }))
}

#[utoipa::path(
    get,
    path = "/admin/v1/users",
    tag = "users",
    summary = "Users in reach",
    params(crate::http::openapi::PageParams, ("tenant_id" = Option<String>, Query, description = "only this tenant's"), ("role" = Option<String>, Query, description = "only this role"), ("status" = Option<String>, Query, description = "active or disabled")),
    responses((status = 200, body = crate::http::admin::Page<UserView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::UsersRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let filters = ["tenant_id", "role", "status"];
    let cursor = |u: &UserView| u.user_id.clone();
    listed(
        &req,
        &state,
        &filters,
        cursor,
        move |conn, query, window| {
            let filter = UserFilter {
                tenant_id: query.get("tenant_id"),
                role: query.get("role"),
                status: query.get("status"),
            };
            users::list(conn, &actor, &filter, window.limit, window.after())
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/admin/v1/users/{id}",
    tag = "users",
    summary = "One user",
    params(("id" = String, Path, description = "the user_id")),
    responses((status = 200, body = UserView), crate::http::openapi::AdminReadErrors),
)]
pub async fn get(
    Admin { actor, .. }: Admin<scope::UsersRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let user = run(&state, move |conn| users::get(conn, &actor, &id)).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(
    patch,
    path = "/admin/v1/users/{id}",
    tag = "users",
    summary = "Change name, role or status (a role or status change ends the user's sessions)",
    request_body = UserPatch,
    params(("id" = String, Path, description = "the user_id")),
    responses((status = 200, body = UserView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn update(
    Admin { actor, .. }: Admin<scope::UsersWrite>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let patch: UserPatch = read_json(payload, false).await?;
    let id = path.into_inner();
    let user = run(&state, move |conn| users::update(conn, &actor, &id, patch)).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/users/{id}",
    tag = "users",
    summary = "Delete a user (its sessions and personal key end with it)",
    params(("id" = String, Path, description = "the user_id")),
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::UsersWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    run(&state, move |conn| users::delete(conn, &actor, &id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/admin/v1/users/{id}/setup-link",
    tag = "users",
    summary = "A new one-time setup link (the old one stops), shown this once",
    params(("id" = String, Path, description = "the user_id")),
    responses((status = 201, body = NewSetupLink), crate::http::openapi::AdminWriteErrors),
)]
pub async fn setup_link(
    Admin { actor, .. }: Admin<scope::UsersWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let link = run(&state, move |conn| users::new_setup_link(conn, &actor, &id)).await?;
    Ok(created(&NewSetupLink {
        setup_url: link.url(&state.issuer),
        expires_at: crate::service::rfc3339(link.expires_at),
    }))
}

use actix_web::{web, HttpRequest, HttpResponse};

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::roles::{self, NewRole, RolePatch, RoleView};

#[utoipa::path(
    get,
    path = "/admin/v1/roles",
    tag = "roles",
    summary = "Built-in and custom roles",
    params(crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::admin::Page<crate::service::roles::RoleView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    listed(
        &req,
        &state,
        &[],
        |r: &RoleView| r.name.clone(),
        move |conn, _, window| roles::list(conn, &actor, window.limit, window.after()),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/admin/v1/roles",
    tag = "roles",
    summary = "Create a custom role",
    request_body = NewRole,
    responses((status = 201, body = crate::service::roles::RoleView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: NewRole = read_json(payload, false).await?;
    let view = run(&state, move |conn| roles::create(conn, &actor, body)).await?;
    Ok(created(&view))
}

#[utoipa::path(
    patch,
    path = "/admin/v1/roles/{name}",
    tag = "roles",
    summary = "Change a custom role's scopes; clients with it follow at their next use",
    request_body = RolePatch,
    params(("name" = String, Path, description = "the role's name")),
    responses((status = 200, body = crate::service::roles::RoleView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn update(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: RolePatch = read_json(payload, false).await?;
    let name = path.into_inner();
    let view = run(&state, move |conn| roles::update(conn, &actor, &name, body)).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/roles/{name}",
    tag = "roles",
    summary = "Delete a custom role nobody has",
    params(("name" = String, Path, description = "the role's name")),
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let name = path.into_inner();
    run(&state, move |conn| roles::delete(conn, &actor, &name)).await?;
    Ok(HttpResponse::NoContent().finish())
}

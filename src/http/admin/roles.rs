use actix_web::{web, HttpRequest, HttpResponse};

use super::{caller, created, page, read_json, run, Query};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::roles::{self, NewRole, RolePatch};

#[utoipa::path(
    get,
    path = "/admin/v1/roles",
    tag = "roles",
    summary = "Built-in and custom roles",
    params(crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::openapi::RolePage), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:read"]))
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:read").await?;
    let query = Query::parse(&req, &[])?;
    let limit = query.limit()?;
    let after = query.get("after");
    let items = run(&state, move |conn| {
        roles::list(conn, &actor, limit + 1, after.as_deref())
    })
    .await?;
    Ok(page(items, limit, |r| r.name.clone()))
}

#[utoipa::path(
    post,
    path = "/admin/v1/roles",
    tag = "roles",
    summary = "Create a custom role",
    request_body = NewRole,
    responses((status = 201, body = crate::service::roles::RoleView), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found: the tenant", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:write"]))
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:write").await?;
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
    responses((status = 200, body = crate::service::roles::RoleView), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict: a built-in role", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:write"]))
)]
pub async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:write").await?;
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
    responses((status = 204, description = "deleted"), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict: a built-in role, or one still given", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:write"]))
)]
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:write").await?;
    let name = path.into_inner();
    run(&state, move |conn| roles::delete(conn, &actor, &name)).await?;
    Ok(HttpResponse::NoContent().finish())
}

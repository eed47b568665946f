use actix_web::{web, HttpRequest, HttpResponse};

use super::{caller, created, page, read_json, run, Query};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::device_groups::{self, DeviceGroupView, NewDeviceGroup};

#[utoipa::path(
    post,
    path = "/admin/v1/device-groups",
    tag = "device groups",
    summary = "Create a device group",
    request_body = NewDeviceGroup,
    responses((status = 201, body = crate::service::device_groups::DeviceGroupView), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:write"]))
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:write").await?;
    let body: NewDeviceGroup = read_json(payload, false).await?;
    let view = run(&state, move |conn| {
        device_groups::create(conn, &actor, body)
    })
    .await?;
    Ok(created(&view))
}

#[utoipa::path(
    get,
    path = "/admin/v1/device-groups",
    tag = "device groups",
    summary = "Device groups in reach",
    params(crate::http::openapi::PageParams, ("tenant_id" = Option<String>, Query, description = "only this tenant's")),
    responses((status = 200, body = crate::http::openapi::DeviceGroupPage), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:read"]))
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:read").await?;
    let query = Query::parse(&req, &["tenant_id"])?;
    let limit = query.limit()?;
    let (after, tenant_id) = (query.get("after"), query.get("tenant_id"));
    let items = run(&state, move |conn| {
        device_groups::list(
            conn,
            &actor,
            tenant_id.as_deref(),
            limit + 1,
            after.as_deref(),
        )
    })
    .await?;
    Ok(page(items, limit, |g| g.id.clone()))
}

#[utoipa::path(
    get,
    path = "/admin/v1/device-groups/{id}",
    tag = "device groups",
    summary = "One device group",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = DeviceGroupView), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:read"]))
)]
pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:read").await?;
    let id = path.into_inner();
    let group = run(&state, move |conn| {
        device_groups::find_reachable(conn, &actor, &id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(DeviceGroupView::from(&group)))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/device-groups/{id}",
    tag = "device groups",
    summary = "Delete a device group no client uses",
    params(("id" = String, Path, description = "the id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "invalid_token", body = crate::http::openapi::ErrorBody), (status = 403, description = "insufficient_scope", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = ["tenants:write"]))
)]
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let actor = caller(&req, &state, "tenants:write").await?;
    let id = path.into_inner();
    run(&state, move |conn| device_groups::delete(conn, &actor, &id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

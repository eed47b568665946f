use actix_web::{web, HttpRequest, HttpResponse};

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::device_groups::{self, DeviceGroupView, NewDeviceGroup};

#[utoipa::path(
    post,
    path = "/admin/v1/device-groups",
    tag = "device groups",
    summary = "Create a device group",
    request_body = NewDeviceGroup,
    responses((status = 201, body = crate::service::device_groups::DeviceGroupView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
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
    responses((status = 200, body = crate::http::admin::Page<crate::service::device_groups::DeviceGroupView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let cursor = |g: &DeviceGroupView| g.id.clone();
    listed(
        &req,
        &state,
        &["tenant_id"],
        cursor,
        move |conn, query, window| {
            let tenant_id = query.get("tenant_id");
            device_groups::list(
                conn,
                &actor,
                tenant_id.as_deref(),
                window.limit,
                window.after(),
            )
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/admin/v1/device-groups/{id}",
    tag = "device groups",
    summary = "One device group",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = DeviceGroupView), crate::http::openapi::AdminReadErrors),
)]
pub async fn get(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
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
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    run(&state, move |conn| device_groups::delete(conn, &actor, &id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

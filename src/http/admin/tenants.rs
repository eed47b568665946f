use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::tenants::{self, TenantView};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub owner_emails: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants",
    tag = "tenants",
    summary = "Create a tenant (default parent: the caller's tenant)",
    request_body = NewTenant,
    responses((status = 201, body = crate::service::tenants::TenantView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: NewTenant = read_json(payload, false).await?;
    let view = run(&state, move |conn| {
        tenants::create(
            conn,
            &actor,
            &body.name,
            body.parent_id.as_deref(),
            &body.owner_emails,
        )
    })
    .await?;
    Ok(created(&view))
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants",
    tag = "tenants",
    summary = "Tenants in reach",
    params(crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::admin::Page<crate::service::tenants::TenantView>), crate::http::openapi::AdminReadErrors),
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
        |t: &TenantView| t.id.clone(),
        move |conn, _, window| tenants::list(conn, &actor, window.limit, window.after()),
    )
    .await
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}",
    tag = "tenants",
    summary = "One tenant",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = crate::service::tenants::TenantView), crate::http::openapi::AdminReadErrors),
)]
pub async fn get(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let tenant = run(&state, move |conn| {
        tenants::find_reachable(conn, &actor, &id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(tenants::TenantView::from(&tenant)))
}

#[utoipa::path(
    patch,
    path = "/admin/v1/tenants/{id}",
    tag = "tenants",
    summary = "Change name, owner_emails or parent_id",
    request_body = crate::service::tenants::TenantPatch,
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = crate::service::tenants::TenantView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn update(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let patch: tenants::TenantPatch = read_json(payload, false).await?;
    let id = path.into_inner();
    let view = run(&state, move |conn| {
        tenants::update(conn, &actor, &id, patch)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{id}",
    tag = "tenants",
    summary = "Delete an empty tenant",
    params(("id" = String, Path, description = "the id")),
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    run(&state, move |conn| tenants::delete(conn, &actor, &id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

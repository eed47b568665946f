//! Trusted issuers (API.md section 3, "Trusted issuers").

use actix_web::{web, HttpRequest, HttpResponse};

use super::{created, listed, read_json, run, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::trusted_issuers::{self, NewTrustedIssuer, TrustedIssuerView};

#[utoipa::path(
    post,
    path = "/admin/v1/trusted-issuers",
    tag = "trusted issuers",
    summary = "Trust an external issuer for workload identity federation; its keys are fetched first",
    request_body = NewTrustedIssuer,
    responses((status = 201, body = crate::service::trusted_issuers::TrustedIssuerView), crate::http::openapi::AdminWriteErrors),
)]
pub async fn create(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body: NewTrustedIssuer = read_json(payload, false).await?;
    check_keys(&state, &actor, &body).await?;
    let view = run(&state, move |conn| {
        trusted_issuers::create(conn, &actor, body)
    })
    .await?;
    Ok(created(&view))
}

/// The issuer's keys are fetched before it is trusted (API.md section 3),
/// on a thread of its own and outside any transaction: keys that cannot be
/// had are a 400 naming why. The tenant is looked up first, so a caller
/// cannot make the server fetch for a tenant out of its reach (that is the
/// 404 the create would answer). The console's form comes through here too.
pub async fn check_keys(
    state: &AppState,
    actor: &crate::service::Actor,
    req: &NewTrustedIssuer,
) -> Result<(), OAuthError> {
    let (actor, tenant_id) = (
        actor.clone(),
        req.tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone()),
    );
    run(state, move |conn| {
        crate::service::tenants::find_reachable(conn, &actor, &tenant_id).map(drop)
    })
    .await?;
    let keys = state.auth.assertion_keys.clone();
    let checked = req.clone();
    crate::assertions::off_thread(move || trusted_issuers::check_keys(&keys, &checked))
        .await
        .unwrap_or_else(|| {
            Err(crate::service::ServiceError::Invalid(
                "the issuer's keys could not be fetched".into(),
            ))
        })
        .map_err(OAuthError::from)
}

#[utoipa::path(
    get,
    path = "/admin/v1/trusted-issuers",
    tag = "trusted issuers",
    summary = "Trusted issuers in reach",
    params(crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::admin::Page<crate::service::trusted_issuers::TrustedIssuerView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let cursor = |t: &TrustedIssuerView| t.id.clone();
    listed(&req, &state, &[], cursor, move |conn, _query, window| {
        trusted_issuers::list(conn, &actor, window.limit, window.after())
    })
    .await
}

#[utoipa::path(
    get,
    path = "/admin/v1/trusted-issuers/{id}",
    tag = "trusted issuers",
    summary = "One trusted issuer",
    params(("id" = String, Path, description = "the id")),
    responses((status = 200, body = TrustedIssuerView), crate::http::openapi::AdminReadErrors),
)]
pub async fn get(
    Admin { actor, .. }: Admin<scope::TenantsRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    let view = run(&state, move |conn| trusted_issuers::get(conn, &actor, &id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/trusted-issuers/{id}",
    tag = "trusted issuers",
    summary = "Stop trusting an issuer no client of the subtree names",
    params(("id" = String, Path, description = "the id")),
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
)]
pub async fn delete(
    Admin { actor, .. }: Admin<scope::TenantsWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let id = path.into_inner();
    run(&state, move |conn| {
        trusted_issuers::delete(conn, &actor, &id)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

use actix_web::{web, HttpRequest, HttpResponse};

use super::{listed, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::audit::{self, AuditFilter, AuditView};

#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    summary = "Audit log of the caller's subtree, newest first",
    params(crate::http::openapi::PageParams, ("target" = Option<String>, Query, description = "a client, tenant, group or role id"), ("action" = Option<String>, Query, description = "such as client.revoke"), ("since" = Option<String>, Query, description = "RFC 3339")),
    responses((status = 200, body = crate::http::admin::Page<crate::service::audit::AuditView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::AuditRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let filters = ["target", "action", "since"];
    let cursor = |e: &AuditView| e.id.clone();
    listed(
        &req,
        &state,
        &filters,
        cursor,
        move |conn, query, window| {
            let filter = AuditFilter {
                target: query.get("target"),
                action: query.get("action"),
                since: query.get("since"),
            };
            audit::list(conn, &actor, &filter, window.limit, window.after())
        },
    )
    .await
}

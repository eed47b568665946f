use actix_web::{web, HttpRequest, HttpResponse};

use super::{page, run, scope, Admin, Query};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::audit::{self, AuditFilter};

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
    let query = Query::parse(&req, &["target", "action", "since"])?;
    let limit = query.limit()?;
    let after = query.get("after");
    let filter = AuditFilter {
        target: query.get("target"),
        action: query.get("action"),
        since: query.get("since"),
    };
    let items = run(&state, move |conn| {
        audit::list(conn, &actor, &filter, limit + 1, after.as_deref())
    })
    .await?;
    Ok(page(items, limit, |e| e.id.clone()))
}

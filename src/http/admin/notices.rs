//! `GET /admin/v1/notices` (API.md section 4, "Expiry notices"): the outbox
//! of the caller's subtree, as the audit log is read.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{listed, scope, Admin};
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::notices::{self, NoticeView};

#[utoipa::path(
    get,
    path = "/admin/v1/notices",
    tag = "audit",
    summary = "Expiry notices of the caller's subtree, newest first: recorded, sent, failed",
    params(crate::http::openapi::PageParams),
    responses((status = 200, body = crate::http::admin::Page<crate::service::notices::NoticeView>), crate::http::openapi::AdminReadErrors),
)]
pub async fn list(
    Admin { actor, .. }: Admin<scope::AuditRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let cursor = |n: &NoticeView| n.id.clone();
    listed(&req, &state, &[], cursor, move |conn, _, window| {
        notices::list(conn, &actor, window.limit, window.after())
    })
    .await
}

//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use super::AppState;

/// `/healthz` and `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (alive), `ready`, or `unavailable`.
    #[schema(value_type = String)]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub store: Option<&'static str>,
    /// `up` or `down`: whether this node hears of changes (PostgreSQL's
    /// NOTIFY, SQLite's change log) and so serves credentials from memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub change_channel: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub reason: Option<&'static str>,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "process alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        store: None,
        change_channel: None,
        reason: None,
    })
}

/// Ready when the store answers (with its schema). The change channel is
/// reported too: a node whose channel is down still serves, from the
/// database, so it stays ready and says so (`"change_channel": "down"`).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "store reachable; body says whether the change channel is up", body = Health), (status = 503, description = "store unreachable", body = Health)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.clone();
    let channel = if state.directory.is_live() {
        "up"
    } else {
        "down"
    };
    crate::metrics::CHANGE_CHANNEL_UP.set(i64::from(channel == "up"));
    match web::block(move || db.ping()).await {
        Ok(Ok(())) => {
            crate::metrics::STORE_REACHABLE.set(1);
            HttpResponse::Ok().json(Health {
                status: "ready",
                store: Some("reachable"),
                change_channel: Some(channel),
                reason: None,
            })
        }
        Ok(Err(e)) => {
            log::warn!("readiness check failed: {e}");
            crate::metrics::STORE_REACHABLE.set(0);
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(Health {
                    status: "unavailable",
                    store: None,
                    change_channel: Some(channel),
                    reason: Some("store unreachable"),
                })
        }
        Err(e) => {
            log::warn!("readiness check failed: {e}");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(Health {
                    status: "unavailable",
                    store: None,
                    change_channel: None,
                    reason: Some("busy"),
                })
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}

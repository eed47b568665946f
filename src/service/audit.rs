//! The audit log: written in the same transaction as the change it records.
//! Details never carry a secret or a token.

use serde::Serialize;

use super::{rfc3339, Actor, ServiceError, ServiceResult};
use crate::store::audit::{self as store_audit, Entry};
use crate::store::{AnyConnection, Tx};
use crate::tokens::opaque::time_ordered_id;

/// Records what `actor` did, in the transaction that does it.
/// An entry as `record` writes it, for `Tx::audit_many`.
pub fn entry(
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    tenant_id: Option<&str>,
    details: serde_json::Value,
) -> Entry {
    let now = chrono::Utc::now();
    Entry {
        id: time_ordered_id(now.timestamp_millis()),
        at: now.timestamp(),
        actor: actor.name.clone(),
        actor_tenant_path: actor.tenant_path.clone(),
        ip: actor.ip.clone(),
        action: action.to_string(),
        target: target.map(str::to_string),
        tenant_id: tenant_id.map(str::to_string),
        details: details.to_string(),
    }
}

pub fn record(
    tx: &mut Tx<'_>,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    tenant_id: Option<&str>,
    details: serde_json::Value,
) -> ServiceResult<()> {
    let now = chrono::Utc::now();
    tx.audit(Entry {
        id: time_ordered_id(now.timestamp_millis()),
        at: now.timestamp(),
        actor: actor.name.clone(),
        actor_tenant_path: actor.tenant_path.clone(),
        ip: actor.ip.clone(),
        action: action.to_string(),
        target: target.map(str::to_string),
        tenant_id: tenant_id.map(str::to_string),
        details: details.to_string(),
    })?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub tenant_id: Option<String>,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    pub action: Option<String>,
    /// RFC 3339; events at or after it.
    pub since: Option<String>,
}

/// The actor's subtree's events, newest first; `after` is the id of the last
/// event of the previous page.
pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    filter: &AuditFilter,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<AuditView>> {
    let since = match &filter.since {
        Some(since) => Some(
            chrono::DateTime::parse_from_rfc3339(since)
                .map_err(|_| {
                    ServiceError::Invalid(format!("since {since:?} is not an RFC 3339 time"))
                })?
                .timestamp(),
        ),
        None => None,
    };
    let stored = store_audit::Filter {
        target: filter.target.clone(),
        action: filter.action.clone(),
        since,
    };
    store_audit::list(conn, &actor.tenant_path, &stored, limit, after)?
        .into_iter()
        .map(|e| {
            let details = serde_json::from_str(&e.details).map_err(|err| {
                ServiceError::Internal(format!(
                    "stored audit_events.details of {} is unreadable: {err}",
                    e.id
                ))
            })?;
            Ok(AuditView {
                id: e.id,
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
                tenant_id: e.tenant_id,
                ip: e.ip,
                details,
            })
        })
        .collect()
}

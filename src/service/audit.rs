//! The audit log: written in the same transaction as the change it records.
//! Details never carry a secret or a token.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;
use serde::Serialize;

use super::{rfc3339, Actor, ServiceError, ServiceResult};
use crate::store::models::AuditEvent;
use crate::store::schema::{audit_events, tenants};
use crate::store::AnyConnection;
use crate::tokens::opaque::time_ordered_id;

pub fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    tenant_id: Option<&str>,
    details: serde_json::Value,
) -> ServiceResult<()> {
    let now = chrono::Utc::now();
    let tenant_path = match tenant_id {
        Some(id) => tenants::table
            .find(id)
            .select(tenants::path)
            .first::<String>(conn)
            .optional()?,
        None => None,
    };
    let event = AuditEvent {
        id: time_ordered_id(now.timestamp_millis()),
        at: now.timestamp(),
        actor: actor.name.clone(),
        action: action.to_string(),
        target: target.map(str::to_string),
        tenant_id: tenant_id.map(str::to_string),
        // An event about no tenant in particular belongs to the actor's.
        tenant_path: tenant_path.or_else(|| Some(actor.tenant_path.clone())),
        ip: actor.ip.clone(),
        details: details.to_string(),
    };
    diesel::insert_into(audit_events::table)
        .values(&event)
        .execute(conn)?;
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
    let mut query = audit_events::table
        .filter(
            audit_events::tenant_path
                .like(crate::service::tenants::subtree_pattern(&actor.tenant_path))
                .escape('\\'),
        )
        .order(audit_events::id.desc())
        .limit(limit)
        .select(AuditEvent::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(audit_events::id.lt(after.to_string()));
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_events::target.eq(target.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(since) = &filter.since {
        let ts = chrono::DateTime::parse_from_rfc3339(since)
            .map_err(|_| ServiceError::Invalid(format!("since {since:?} is not an RFC 3339 time")))?
            .timestamp();
        query = query.filter(audit_events::at.ge(ts));
    }
    Ok(query
        .load(conn)?
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            tenant_id: e.tenant_id,
            ip: e.ip,
            details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

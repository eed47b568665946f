//! The audit log's rows. Written only through `Tx::audit`, so an entry
//! exists exactly when the change it records was committed.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

use super::models::AuditEvent;
use super::schema::audit_events;
use super::{tenants, AnyConnection};

/// What a service says about a change; the store adds the tenant's path.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub at: i64,
    pub actor: String,
    /// Where an event about no tenant in particular is filed: the actor's.
    pub actor_tenant_path: String,
    pub ip: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub tenant_id: Option<String>,
    pub details: String,
}

/// Inserts `entry`, filed under its tenant's current path (the actor's
/// tenant when it names none, or when the tenant is gone).
pub(super) fn insert(conn: &mut AnyConnection, entry: Entry) -> QueryResult<()> {
    let tenant_path = match &entry.tenant_id {
        Some(id) => tenants::path_of(conn, id)?,
        None => None,
    };
    let event = AuditEvent {
        id: entry.id,
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        tenant_id: entry.tenant_id,
        tenant_path: tenant_path.or(Some(entry.actor_tenant_path)),
        ip: entry.ip,
        details: entry.details,
    };
    diesel::insert_into(audit_events::table)
        .values(&event)
        .execute(conn)?;
    Ok(())
}

/// Inserts `entries` in one statement, each filed as `insert` would file it
/// (the path of each distinct tenant read once).
pub(super) fn insert_many(conn: &mut AnyConnection, entries: Vec<Entry>) -> QueryResult<()> {
    let mut paths: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        let tenant_path = match &entry.tenant_id {
            Some(id) => match paths.get(id) {
                Some(path) => path.clone(),
                None => {
                    let path = tenants::path_of(conn, id)?;
                    paths.insert(id.clone(), path.clone());
                    path
                }
            },
            None => None,
        };
        events.push(AuditEvent {
            id: entry.id,
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            tenant_id: entry.tenant_id,
            tenant_path: tenant_path.or(Some(entry.actor_tenant_path)),
            ip: entry.ip,
            details: entry.details,
        });
    }
    match conn {
        // One statement per hundred rows: a round trip each, not one a row.
        AnyConnection::Postgresql(pg) => {
            for chunk in events.chunks(100) {
                diesel::insert_into(audit_events::table)
                    .values(chunk)
                    .execute(pg)?;
            }
        }
        // In process: a row at a time costs no round trip.
        AnyConnection::Sqlite(lite) => {
            for event in &events {
                diesel::insert_into(audit_events::table)
                    .values(event)
                    .execute(lite)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub target: Option<String>,
    pub action: Option<String>,
    /// Events at or after this time (seconds).
    pub since: Option<i64>,
}

/// Events filed at or below tenant path `path`, newest first, `limit` of
/// them older than the event `after`.
pub fn list(
    conn: &mut AnyConnection,
    path: &str,
    filter: &Filter,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table
        .filter(
            audit_events::tenant_path
                .like(tenants::subtree_pattern(path))
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
    if let Some(since) = filter.since {
        query = query.filter(audit_events::at.ge(since));
    }
    query.load(conn)
}

/// Rewrites the events' paths under `old_path` to lie under `new_path`, so a
/// moved subtree's history is seen from its new place and no longer from its
/// old one. A prefix compare, not LIKE: `_` in ids is a LIKE wildcard.
pub fn move_paths(conn: &mut AnyConnection, old_path: &str, new_path: &str) -> QueryResult<()> {
    let old_len = i32::try_from(old_path.chars().count()).unwrap_or(i32::MAX);
    match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(
            "UPDATE audit_events SET tenant_path = $1 || substr(tenant_path, $2) \
             WHERE substr(tenant_path, 1, $3) = $4",
        )
        .bind::<Text, _>(new_path)
        .bind::<Integer, _>(old_len.saturating_add(1))
        .bind::<Integer, _>(old_len)
        .bind::<Text, _>(old_path)
        .execute(pg)?,
        AnyConnection::Sqlite(lite) => diesel::sql_query(
            "UPDATE audit_events SET tenant_path = ? || substr(tenant_path, ?) \
             WHERE substr(tenant_path, 1, ?) = ?",
        )
        .bind::<Text, _>(new_path)
        .bind::<Integer, _>(old_len.saturating_add(1))
        .bind::<Integer, _>(old_len)
        .bind::<Text, _>(old_path)
        .execute(lite)?,
    };
    Ok(())
}

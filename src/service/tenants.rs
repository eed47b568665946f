//! Tenants: a tree (a vendor above its sub-accounts). Each row keeps its
//! materialised path, so "this tenant or one below it" is a prefix match.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;
use serde::Serialize;

pub use super::patch::TenantPatch;
use super::{audit, now, rfc3339, Actor, ServiceError, ServiceResult};
use crate::store::models::Tenant;
use crate::store::schema::tenants;
use crate::store::{write_transaction, AnyConnection};
use crate::tokens::opaque::random_id;

pub const MAX_NAME_LEN: usize = 200;

/// The PostgreSQL advisory lock that serialises changes to the tree's shape.
/// Two moves checked for cycles at once (A under B, B under A) would each pass
/// against a tree the other is changing. SQLite needs none: its writers are
/// serialised by `BEGIN IMMEDIATE`.
const TREE_LOCK_KEY: i64 = 0x6b77_7472_6565; // "kwtree"

/// Takes the tree lock for the rest of the transaction (PostgreSQL); call it
/// first in the transaction, before reading any path.
fn lock_tree(conn: &mut AnyConnection) -> ServiceResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({TREE_LOCK_KEY})")).execute(pg)?;
    }
    Ok(())
}

/// Rewrites the audit events' materialised paths under `old_path` to lie
/// under `new_path`, so a moved subtree's history is seen from its new place
/// and no longer from its old one. A prefix compare, not LIKE: `_` in ids is
/// a LIKE wildcard.
fn move_audit_paths(conn: &mut AnyConnection, old_path: &str, new_path: &str) -> ServiceResult<()> {
    use diesel::sql_types::{Integer, Text};
    let old_len = i32::try_from(old_path.chars().count())
        .map_err(|_| ServiceError::Internal("tenant path too long".into()))?;
    match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(
            "UPDATE audit_events SET tenant_path = $1 || substr(tenant_path, $2) \
             WHERE substr(tenant_path, 1, $3) = $4",
        )
        .bind::<Text, _>(new_path)
        .bind::<Integer, _>(old_len + 1)
        .bind::<Integer, _>(old_len)
        .bind::<Text, _>(old_path)
        .execute(pg)?,
        AnyConnection::Sqlite(lite) => diesel::sql_query(
            "UPDATE audit_events SET tenant_path = ? || substr(tenant_path, ?) \
             WHERE substr(tenant_path, 1, ?) = ?",
        )
        .bind::<Text, _>(new_path)
        .bind::<Integer, _>(old_len + 1)
        .bind::<Integer, _>(old_len)
        .bind::<Text, _>(old_path)
        .execute(lite)?,
    };
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub owner_emails: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        TenantView {
            id: t.id.clone(),
            name: t.name.clone(),
            parent_id: t.parent_id.clone(),
            owner_emails: serde_json::from_str(&t.owner_emails).unwrap_or_default(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .find(id)
        .select(Tenant::as_select())
        .first(conn)
        .optional()
}

/// The tenant, if it exists and the actor may reach it; otherwise NotFound,
/// the same answer for both so that nothing leaks that it exists.
pub fn find_reachable(conn: &mut AnyConnection, actor: &Actor, id: &str) -> ServiceResult<Tenant> {
    match find(conn, id)? {
        Some(t) if actor.can_reach(&t.path) => Ok(t),
        _ => Err(ServiceError::NotFound("tenant")),
    }
}

pub fn root(conn: &mut AnyConnection) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::parent_id.is_null())
        .order(tenants::created_at.asc())
        .select(Tenant::as_select())
        .first(conn)
        .optional()
}

/// A LIKE pattern for "this path and everything below it". Ids contain
/// `_`, a LIKE wildcard, so the path is escaped (with `\\`, given to
/// `.escape()`), never matched loosely.
pub fn subtree_pattern(path: &str) -> String {
    let mut pattern = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

pub fn validate_name(name: &str) -> ServiceResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::Invalid("name must not be empty".into()));
    }
    if trimmed.chars().count() > MAX_NAME_LEN {
        return Err(ServiceError::Invalid(format!(
            "name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(trimmed.to_string())
}

pub fn validate_email(email: &str) -> ServiceResult<String> {
    let email = email.trim();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
                && email.len() <= 254
        }
        None => false,
    };
    if valid {
        Ok(email.to_string())
    } else {
        Err(ServiceError::Invalid(format!(
            "{email:?} is not a valid email address"
        )))
    }
}

/// Inserts a tenant row; the caller holds the transaction.
pub fn insert(
    conn: &mut AnyConnection,
    name: &str,
    parent: Option<&Tenant>,
    owner_emails: &[String],
) -> ServiceResult<Tenant> {
    let id = random_id("tn_");
    let path = match parent {
        Some(p) => format!("{}{id}/", p.path),
        None => format!("/{id}/"),
    };
    let ts = now();
    let tenant = Tenant {
        id,
        name: validate_name(name)?,
        parent_id: parent.map(|p| p.id.clone()),
        path,
        owner_emails: serde_json::to_string(owner_emails)
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        created_at: ts,
        updated_at: ts,
    };
    diesel::insert_into(tenants::table)
        .values(&tenant)
        .execute(conn)?;
    Ok(tenant)
}

pub fn create(
    conn: &mut AnyConnection,
    actor: &Actor,
    name: &str,
    parent_id: Option<&str>,
    owner_emails: &[String],
) -> ServiceResult<TenantView> {
    let name = validate_name(name)?;
    let emails = owner_emails
        .iter()
        .map(|e| validate_email(e))
        .collect::<ServiceResult<Vec<_>>>()?;
    write_transaction(conn, |conn| {
        // The parent's path is copied: it must not move meanwhile.
        lock_tree(conn)?;
        let parent_id = parent_id.unwrap_or(&actor.tenant_id);
        let parent = find_reachable(conn, actor, parent_id)?;
        let tenant = insert(conn, &name, Some(&parent), &emails)?;
        audit::record(
            conn,
            actor,
            "tenant.create",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({"name": tenant.name, "parent_id": tenant.parent_id}),
        )?;
        Ok(TenantView::from(&tenant))
    })
}

/// Tenants the actor can reach, in id order, `limit` after the `after` id.
pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<TenantView>> {
    let mut query = tenants::table
        .filter(
            tenants::path
                .like(crate::service::tenants::subtree_pattern(&actor.tenant_path))
                .escape('\\'),
        )
        .order(tenants::id.asc())
        .limit(limit)
        .select(Tenant::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(tenants::id.gt(after.to_string()));
    }
    Ok(query.load(conn)?.iter().map(TenantView::from).collect())
}

/// A PATCH of a tenant: only the fields given change.
pub fn update(
    conn: &mut AnyConnection,
    actor: &Actor,
    id: &str,
    patch: TenantPatch,
) -> ServiceResult<TenantView> {
    use crate::store::schema::tenants as t;
    if let Some(field) = patch.fixed_field() {
        return Err(ServiceError::Invalid(format!("{field} cannot be changed")));
    }
    let fields = patch.fields();
    let name = patch.name.as_deref().map(validate_name).transpose()?;
    let emails: Option<Vec<String>> = match &patch.owner_emails {
        Some(list) => Some(
            list.iter()
                .map(|e| validate_email(e))
                .collect::<ServiceResult<_>>()?,
        ),
        None => None,
    };
    let parent = patch.parent_id;
    write_transaction(conn, |conn| {
        if parent.is_some() {
            lock_tree(conn)?;
        }
        let mut tenant = find_reachable(conn, actor, id)?;
        let ts = now();
        if let Some(parent_id) = &parent {
            if tenant.path == actor.tenant_path {
                return Err(ServiceError::Invalid(
                    "parent_id: a caller cannot move its own tenant".into(),
                ));
            }
            let new_parent = find_reachable(conn, actor, parent_id)?;
            if new_parent.path.starts_with(&tenant.path) {
                return Err(ServiceError::Invalid(
                    "parent_id would make a cycle: the new parent is this tenant or below it"
                        .into(),
                ));
            }
            let old_path = tenant.path.clone();
            roles_stay_in_reach(conn, &old_path, &new_parent.path)?;
            let new_path = format!("{}{}/", new_parent.path, tenant.id);
            // Re-root the whole subtree: every path below keeps its tail.
            let below: Vec<(String, String)> = t::table
                .filter(t::path.like(subtree_pattern(&old_path)).escape('\\'))
                .select((t::id, t::path))
                .load(conn)?;
            for (below_id, below_path) in below {
                let moved = format!("{new_path}{}", &below_path[old_path.len()..]);
                diesel::update(t::table.find(&below_id))
                    .set(t::path.eq(moved))
                    .execute(conn)?;
            }
            diesel::update(t::table.find(&tenant.id))
                .set(t::parent_id.eq(Some(&new_parent.id)))
                .execute(conn)?;
            move_audit_paths(conn, &old_path, &new_path)?;
            tenant.parent_id = Some(new_parent.id);
            tenant.path = new_path;
            crate::store::changes::announce(conn, crate::store::changes::Change::Tenants)?;
        }
        if let Some(name) = &name {
            tenant.name = name.clone();
        }
        if let Some(emails) = &emails {
            tenant.owner_emails =
                serde_json::to_string(emails).map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        tenant.updated_at = ts;
        diesel::update(t::table.find(&tenant.id))
            .set((
                t::name.eq(&tenant.name),
                t::owner_emails.eq(&tenant.owner_emails),
                t::updated_at.eq(ts),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "tenant.update",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({ "fields": fields }),
        )?;
        Ok(TenantView::from(&tenant))
    })
}

/// Deletes a tenant with no clients, sub-tenants or device groups.
pub fn delete(conn: &mut AnyConnection, actor: &Actor, id: &str) -> ServiceResult<()> {
    use crate::store::schema::{clients, device_groups};
    write_transaction(conn, |conn| {
        let tenant = find_reachable(conn, actor, id)?;
        if tenant.path == actor.tenant_path {
            return Err(ServiceError::Conflict(
                "a caller cannot delete its own tenant".into(),
            ));
        }
        let children = tenants::table
            .filter(tenants::parent_id.eq(&tenant.id))
            .count()
            .get_result::<i64>(conn)?;
        let members = clients::table
            .filter(clients::tenant_id.eq(&tenant.id))
            .count()
            .get_result::<i64>(conn)?;
        let groups = device_groups::table
            .filter(device_groups::tenant_id.eq(&tenant.id))
            .count()
            .get_result::<i64>(conn)?;
        let owned_roles = crate::store::schema::roles::table
            .filter(crate::store::schema::roles::tenant_id.eq(&tenant.id))
            .count()
            .get_result::<i64>(conn)?;
        if children + members + groups + owned_roles > 0 {
            return Err(ServiceError::Conflict(format!(
                "the tenant still has {children} sub-tenant(s), {members} client(s), {groups} device group(s) and {owned_roles} custom role(s)"
            )));
        }
        // Recorded first, while the tenant's path can still be looked up.
        audit::record(
            conn,
            actor,
            "tenant.delete",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({"name": tenant.name}),
        )?;
        diesel::delete(tenants::table.find(&tenant.id)).execute(conn)?;
        crate::store::changes::announce(conn, crate::store::changes::Change::Tenants)?;
        Ok(())
    })
}

/// Refuses a move of the subtree at `old_path` under the tenant at
/// `new_parent_path` when a client in the subtree has a custom role of a
/// tenant that would no longer be above it (roles of the subtree move with it).
fn roles_stay_in_reach(
    conn: &mut AnyConnection,
    old_path: &str,
    new_parent_path: &str,
) -> ServiceResult<()> {
    use crate::store::schema::{clients, roles};
    let used: Vec<String> = clients::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(old_path)).escape('\\'))
        .select(clients::role)
        .distinct()
        .load(conn)?;
    let owners: Vec<(String, Option<String>)> = roles::table
        .filter(roles::name.eq_any(&used))
        .filter(roles::tenant_id.is_not_null())
        .select((roles::name, roles::tenant_id))
        .load(conn)?;
    for (role, owner) in owners {
        let Some(owner) = owner else { continue };
        let Some(owner_path) = find(conn, &owner)?.map(|t| t.path) else {
            continue;
        };
        let moves_along = owner_path.starts_with(old_path);
        if !moves_along && !new_parent_path.starts_with(&owner_path) {
            return Err(ServiceError::Conflict(format!(
                "a client below this tenant has role {role:?}, which belongs to a tenant that would no longer be above it"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod subtree_tests {
    use super::subtree_pattern;

    #[test]
    fn subtree_patterns_escape_like_wildcards_in_ids() {
        assert_eq!(subtree_pattern("/tn_a/"), "/tn\\_a/%");
        assert_eq!(subtree_pattern("/a%b\\c/"), "/a\\%b\\\\c/%");
    }
}

//! Tenant rows: a tree kept as materialised paths (`/root/child/`), so "this
//! tenant or one below it" is a prefix match.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models;
use super::schema::{clients, device_groups, roles, tenants, trusted_issuers, users};
use super::AnyConnection;
use crate::domain::Tenant;

/// Rows are parsed once, here: a corrupt one fails the read.
fn parse(row: models::Tenant) -> QueryResult<Tenant> {
    Ok(Tenant::try_from(row)?)
}

/// The PostgreSQL advisory lock that serialises changes to the tree's shape.
/// Two moves checked for cycles at once (A under B, B under A) would each pass
/// against a tree the other is changing. SQLite needs none: its writers are
/// serialised by `BEGIN IMMEDIATE`.
const TREE_LOCK_KEY: i64 = 0x6b77_7472_6565; // "kwtree"

/// Takes the tree lock for the rest of the transaction (PostgreSQL); call it
/// first in the transaction, before reading any path.
pub fn lock_tree(conn: &mut AnyConnection) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({TREE_LOCK_KEY})")).execute(pg)?;
    }
    Ok(())
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

pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .find(id)
        .select(models::Tenant::as_select())
        .first(conn)
        .optional()?
        .map(parse)
        .transpose()
}

pub fn path_of(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<String>> {
    tenants::table
        .find(id)
        .select(tenants::path)
        .first(conn)
        .optional()
}

/// The first tenant made: the root.
pub fn root(conn: &mut AnyConnection) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::parent_id.is_null())
        .order(tenants::created_at.asc())
        .select(models::Tenant::as_select())
        .first(conn)
        .optional()?
        .map(parse)
        .transpose()
}

/// Every tenant's id and path (the directory's tree).
pub fn all_paths(conn: &mut AnyConnection) -> QueryResult<Vec<(String, String)>> {
    tenants::table
        .select((tenants::id, tenants::path))
        .load(conn)
}

pub fn insert(conn: &mut AnyConnection, tenant: &Tenant) -> QueryResult<()> {
    diesel::insert_into(tenants::table)
        .values(&models::Tenant::from(tenant))
        .execute(conn)
        .map(|_| ())
}

/// Tenants at or below `path`, in id order, `limit` after the `after` id.
pub fn list_under(
    conn: &mut AnyConnection,
    path: &str,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<Tenant>> {
    let mut query = tenants::table
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .order(tenants::id.asc())
        .limit(limit)
        .select(models::Tenant::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(tenants::id.gt(after.to_string()));
    }
    let rows: Vec<models::Tenant> = query.load(conn)?;
    rows.into_iter().map(parse).collect()
}

/// Moves the subtree at `old_path` to `new_path` (every path below keeps
/// its tail) and hangs its top, `id`, under `new_parent_id`.
pub fn move_subtree(
    conn: &mut AnyConnection,
    id: &str,
    new_parent_id: &str,
    old_path: &str,
    new_path: &str,
) -> QueryResult<()> {
    let below: Vec<(String, String)> = tenants::table
        .filter(tenants::path.like(subtree_pattern(old_path)).escape('\\'))
        .select((tenants::id, tenants::path))
        .load(conn)?;
    for (below_id, below_path) in below {
        let moved = format!("{new_path}{}", &below_path[old_path.len()..]);
        diesel::update(tenants::table.find(&below_id))
            .set(tenants::path.eq(moved))
            .execute(conn)?;
    }
    diesel::update(tenants::table.find(id))
        .set(tenants::parent_id.eq(Some(new_parent_id)))
        .execute(conn)?;
    Ok(())
}

/// Writes the fields a PATCH may change (not the tree's shape).
pub fn save_details(conn: &mut AnyConnection, tenant: &Tenant) -> QueryResult<()> {
    diesel::update(tenants::table.find(tenant.id.as_str()))
        .set((
            tenants::name.eq(&tenant.name),
            tenants::owner_emails.eq(tenant.owner_emails.to_json()),
            tenants::updated_at.eq(tenant.updated_at),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
    diesel::delete(tenants::table.find(id))
        .execute(conn)
        .map(|_| ())
}

/// What still hangs on a tenant and keeps it from being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependents {
    pub children: i64,
    pub clients: i64,
    pub device_groups: i64,
    pub roles: i64,
    pub users: i64,
    pub trusted_issuers: i64,
}

impl Dependents {
    pub fn any(&self) -> bool {
        self.children
            + self.clients
            + self.device_groups
            + self.roles
            + self.users
            + self.trusted_issuers
            > 0
    }
}

pub fn dependents(conn: &mut AnyConnection, id: &str) -> QueryResult<Dependents> {
    Ok(Dependents {
        children: tenants::table
            .filter(tenants::parent_id.eq(id))
            .count()
            .get_result(conn)?,
        clients: clients::table
            .filter(clients::tenant_id.eq(id))
            .count()
            .get_result(conn)?,
        device_groups: device_groups::table
            .filter(device_groups::tenant_id.eq(id))
            .count()
            .get_result(conn)?,
        roles: roles::table
            .filter(roles::tenant_id.eq(id))
            .count()
            .get_result(conn)?,
        users: users::table
            .filter(users::tenant_id.eq(id))
            .count()
            .get_result(conn)?,
        trusted_issuers: trusted_issuers::table
            .filter(trusted_issuers::tenant_id.eq(id))
            .count()
            .get_result(conn)?,
    })
}

/// The custom roles given to clients or users at or below `path`, with the
/// tenant that owns each.
pub fn custom_roles_used_under(
    conn: &mut AnyConnection,
    path: &str,
) -> QueryResult<Vec<(String, String)>> {
    let mut used: Vec<String> = clients::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .select(clients::role)
        .distinct()
        .load(conn)?;
    let by_users: Vec<String> = users::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .select(users::role)
        .distinct()
        .load(conn)?;
    used.extend(by_users);
    let owners: Vec<(String, Option<String>)> = roles::table
        .filter(roles::name.eq_any(&used))
        .filter(roles::tenant_id.is_not_null())
        .select((roles::name, roles::tenant_id))
        .load(conn)?;
    Ok(owners
        .into_iter()
        .filter_map(|(role, owner)| owner.map(|owner| (role, owner)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::subtree_pattern;

    #[test]
    fn subtree_patterns_escape_like_wildcards_in_ids() {
        assert_eq!(subtree_pattern("/tn_a/"), "/tn\\_a/%");
        assert_eq!(subtree_pattern("/a%b\\c/"), "/a\\%b\\\\c/%");
    }
}

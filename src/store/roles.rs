//! Role rows: the built-ins (no tenant) and custom roles of a tenant.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models::Role;
use super::schema::{roles, tenants};
use super::tenants::subtree_pattern;
use super::AnyConnection;

diesel::define_sql_function! {
    /// SQL `lower()`, the same on both backends for ASCII names.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

pub fn find(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<Role>> {
    roles::table
        .find(name)
        .select(Role::as_select())
        .first(conn)
        .optional()
}

/// The role whose name equals `name` regardless of case.
pub fn find_any_case(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<String>> {
    roles::table
        .filter(lower(roles::name).eq(name.to_ascii_lowercase()))
        .select(roles::name)
        .first(conn)
        .optional()
}

/// The built-ins and the custom roles of the tenants on `path` (the tenant
/// and those above it) and below it, by name, `limit` after `after`.
pub fn list_for(
    conn: &mut AnyConnection,
    path: &str,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<Role>> {
    let above: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let below = tenants::table
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .select(tenants::id.nullable());
    let mut query = roles::table
        .filter(
            roles::tenant_id
                .is_null()
                .or(roles::tenant_id.eq_any(above))
                .or(roles::tenant_id.eq_any(below)),
        )
        .order(roles::name.asc())
        .limit(limit)
        .select(Role::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(roles::name.gt(after.to_string()));
    }
    query.load(conn)
}

/// Every role's scope string (discovery's `scopes_supported`).
pub fn all_scopes(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    roles::table.select(roles::scopes).load(conn)
}

pub fn insert(conn: &mut AnyConnection, role: &Role) -> QueryResult<()> {
    diesel::insert_into(roles::table)
        .values(role)
        .execute(conn)
        .map(|_| ())
}

pub fn set_scopes(conn: &mut AnyConnection, name: &str, scopes: &str) -> QueryResult<()> {
    diesel::update(roles::table.find(name))
        .set(roles::scopes.eq(scopes))
        .execute(conn)
        .map(|_| ())
}

pub fn delete(conn: &mut AnyConnection, name: &str) -> QueryResult<()> {
    diesel::delete(roles::table.find(name))
        .execute(conn)
        .map(|_| ())
}

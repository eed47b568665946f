//! Device group rows.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models::DeviceGroup;
use super::schema::{clients, device_groups, tenants};
use super::tenants::subtree_pattern;
use super::AnyConnection;

/// The group and its tenant's path.
pub fn find_with_path(
    conn: &mut AnyConnection,
    id: &str,
) -> QueryResult<Option<(DeviceGroup, String)>> {
    device_groups::table
        .inner_join(tenants::table)
        .filter(device_groups::id.eq(id))
        .select((DeviceGroup::as_select(), tenants::path))
        .first(conn)
        .optional()
}

/// The tenant a group belongs to, if the group exists.
pub fn tenant_of(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<String>> {
    device_groups::table
        .find(id)
        .select(device_groups::tenant_id)
        .first(conn)
        .optional()
}

pub fn name_taken(conn: &mut AnyConnection, tenant_id: &str, name: &str) -> QueryResult<bool> {
    let taken: i64 = device_groups::table
        .filter(device_groups::tenant_id.eq(tenant_id))
        .filter(device_groups::name.eq(name))
        .count()
        .get_result(conn)?;
    Ok(taken > 0)
}

pub fn insert(conn: &mut AnyConnection, group: &DeviceGroup) -> QueryResult<()> {
    diesel::insert_into(device_groups::table)
        .values(group)
        .execute(conn)
        .map(|_| ())
}

/// Groups at or below tenant path `path` (only `tenant_id`'s when given), in
/// id order, `limit` after the `after` id.
pub fn list_under(
    conn: &mut AnyConnection,
    path: &str,
    tenant_id: Option<&str>,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<DeviceGroup>> {
    let mut query = device_groups::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .order(device_groups::id.asc())
        .limit(limit)
        .select(DeviceGroup::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(device_groups::id.gt(after.to_string()));
    }
    if let Some(tenant_id) = tenant_id {
        query = query.filter(device_groups::tenant_id.eq(tenant_id.to_string()));
    }
    query.load(conn)
}

/// How many clients are bound to the group.
pub fn members(conn: &mut AnyConnection, id: &str) -> QueryResult<i64> {
    clients::table
        .filter(clients::device_group_id.eq(id))
        .count()
        .get_result(conn)
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
    diesel::delete(device_groups::table.find(id))
        .execute(conn)
        .map(|_| ())
}

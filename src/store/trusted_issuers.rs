//! Trusted issuer rows (API.md section 3, "Trusted issuers").

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models::TrustedIssuer;
use super::schema::{clients, tenants, trusted_issuers};
use super::tenants::subtree_pattern;
use super::AnyConnection;

/// The issuer record and its tenant's path.
pub fn find_with_path(
    conn: &mut AnyConnection,
    id: &str,
) -> QueryResult<Option<(TrustedIssuer, String)>> {
    trusted_issuers::table
        .inner_join(tenants::table)
        .filter(trusted_issuers::id.eq(id))
        .select((TrustedIssuer::as_select(), tenants::path))
        .first(conn)
        .optional()
}

/// Every tenant's record of `issuer`, with the tenant's path: whoever
/// presents an assertion from it is matched against these.
pub fn by_issuer(
    conn: &mut AnyConnection,
    issuer: &str,
) -> QueryResult<Vec<(TrustedIssuer, String)>> {
    trusted_issuers::table
        .inner_join(tenants::table)
        .filter(trusted_issuers::issuer.eq(issuer))
        .select((TrustedIssuer::as_select(), tenants::path))
        .order(trusted_issuers::id)
        .load(conn)
}

pub fn taken(conn: &mut AnyConnection, tenant_id: &str, issuer: &str) -> QueryResult<bool> {
    let n: i64 = trusted_issuers::table
        .filter(trusted_issuers::tenant_id.eq(tenant_id))
        .filter(trusted_issuers::issuer.eq(issuer))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

pub fn insert(conn: &mut AnyConnection, row: &TrustedIssuer) -> QueryResult<()> {
    diesel::insert_into(trusted_issuers::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(trusted_issuers::table.find(id)).execute(conn)
}

/// Records at or below tenant path `path`, in id order, `limit` after the
/// `after` id.
pub fn list_under(
    conn: &mut AnyConnection,
    path: &str,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<TrustedIssuer>> {
    let mut query = trusted_issuers::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .order(trusted_issuers::id.asc())
        .limit(limit)
        .select(TrustedIssuer::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(trusted_issuers::id.gt(after.to_string()));
    }
    query.load(conn)
}

/// Records of `issuer` on the path from the root down to `path` (the
/// tenants above it and itself): those a client at `path` may name.
pub fn in_reach_of(
    conn: &mut AnyConnection,
    issuer: &str,
    path: &str,
) -> QueryResult<Vec<TrustedIssuer>> {
    Ok(by_issuer(conn, issuer)?
        .into_iter()
        .filter(|(_, tenant_path)| path.starts_with(tenant_path.as_str()))
        .map(|(row, _)| row)
        .collect())
}

/// Whether any client at or below tenant path `path` names `issuer` in its
/// federated subjects (a trusted issuer in use cannot go: 409).
pub fn in_use_under(conn: &mut AnyConnection, issuer: &str, path: &str) -> QueryResult<bool> {
    use super::schema::client_federated_subjects as fs;
    let n: i64 = fs::table
        .inner_join(clients::table.on(clients::client_id.eq(fs::client_id)))
        .inner_join(tenants::table.on(tenants::id.eq(clients::tenant_id)))
        .filter(fs::issuer.eq(issuer))
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The issuers named in federated subjects of clients at or below `path`,
/// each with the client's tenant path.
pub fn used_under(conn: &mut AnyConnection, path: &str) -> QueryResult<Vec<(String, String)>> {
    use super::schema::client_federated_subjects as fs;
    fs::table
        .inner_join(clients::table.on(clients::client_id.eq(fs::client_id)))
        .inner_join(tenants::table.on(tenants::id.eq(clients::tenant_id)))
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .select((fs::issuer, tenants::path))
        .distinct()
        .load(conn)
}

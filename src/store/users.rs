//! User rows (people who sign in to the console) and their one-time setup
//! links. Their sessions are in `sessions`.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models::{self, SetupLinkRow};
use super::schema::{clients, sessions, tenants, user_setup_links, users};
use super::tenants::subtree_pattern;
use super::AnyConnection;
use crate::domain::User;

diesel::define_sql_function! {
    /// SQL `lower()`: the function of the unique index `users_email_folded_idx`,
    /// so a lookup folds case exactly as the index does.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Rows are parsed once, here: a corrupt one fails the read.
fn parse(row: models::User) -> QueryResult<User> {
    Ok(User::try_from(row)?)
}

/// The user and its tenant's path.
pub fn find_with_path(
    conn: &mut AnyConnection,
    user_id: &str,
) -> QueryResult<Option<(User, String)>> {
    let found: Option<(models::User, String)> = users::table
        .inner_join(tenants::table)
        .filter(users::user_id.eq(user_id))
        .select((models::User::as_select(), tenants::path))
        .first(conn)
        .optional()?;
    found.map(|(row, path)| Ok((parse(row)?, path))).transpose()
}

pub fn find(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<User>> {
    let row: Option<models::User> = users::table
        .find(user_id)
        .select(models::User::as_select())
        .first(conn)
        .optional()?;
    row.map(parse).transpose()
}

/// The user whose email equals `email` regardless of case.
pub fn find_by_email(conn: &mut AnyConnection, email: &str) -> QueryResult<Option<User>> {
    let row: Option<models::User> = users::table
        .filter(lower(users::email).eq(lower(email)))
        .select(models::User::as_select())
        .first(conn)
        .optional()?;
    row.map(parse).transpose()
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tenant_id: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
}

/// Users at or below tenant path `path`, in id order, `limit` after the
/// `after` id.
pub fn list_under(
    conn: &mut AnyConnection,
    path: &str,
    filter: &ListFilter,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .order(users::user_id.asc())
        .select(models::User::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::user_id.gt(after.to_string()));
    }
    if let Some(tenant_id) = &filter.tenant_id {
        query = query.filter(users::tenant_id.eq(tenant_id.clone()));
    }
    if let Some(role) = &filter.role {
        query = query.filter(users::role.eq(role.clone()));
    }
    if let Some(status) = &filter.status {
        query = query.filter(users::status.eq(status.clone()));
    }
    let rows: Vec<models::User> = query.limit(limit).load(conn)?;
    rows.into_iter().map(parse).collect()
}

pub fn insert(conn: &mut AnyConnection, user: &User) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(&models::User::from(user))
        .execute(conn)
        .map(|_| ())
}

/// Writes every column of `user` at a new version, only if nobody changed
/// it since it was read at `user.version`. False: somebody did.
pub fn save_if_version(conn: &mut AnyConnection, user: &User, now: i64) -> QueryResult<bool> {
    let mut row = models::User::from(user);
    row.version = user.version + 1;
    row.updated_at = now;
    let saved = diesel::update(
        users::table
            .find(user.user_id.as_str())
            .filter(users::version.eq(user.version)),
    )
    .set(&row)
    .execute(conn)?;
    Ok(saved > 0)
}

pub fn set_last_login(conn: &mut AnyConnection, user_id: &str, at: i64) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::last_login_at.eq(Some(at)))
        .execute(conn)
        .map(|_| ())
}

/// Deletes the user with its setup links and sessions.
pub fn delete(conn: &mut AnyConnection, user_id: &str) -> QueryResult<()> {
    diesel::delete(user_setup_links::table.filter(user_setup_links::user_id.eq(user_id)))
        .execute(conn)?;
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    diesel::delete(users::table.find(user_id)).execute(conn)?;
    Ok(())
}

/// The personal API access keys of the user (at most one by the service's
/// rule; any number here).
pub fn personal_keys(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<String>> {
    clients::table
        .filter(clients::user_id.eq(user_id))
        .select(clients::client_id)
        .load(conn)
}

pub fn count_in_tenant(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<i64> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .count()
        .get_result(conn)
}

pub fn count_with_role(conn: &mut AnyConnection, role: &str) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(role))
        .count()
        .get_result(conn)
}

/// The user's new setup link; its older ones stop.
pub fn replace_setup_link(conn: &mut AnyConnection, link: &SetupLinkRow) -> QueryResult<()> {
    diesel::delete(user_setup_links::table.filter(user_setup_links::user_id.eq(&link.user_id)))
        .execute(conn)?;
    diesel::insert_into(user_setup_links::table)
        .values(link)
        .execute(conn)
        .map(|_| ())
}

pub fn find_setup_link(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> QueryResult<Option<SetupLinkRow>> {
    user_setup_links::table
        .find(token_hash)
        .select(SetupLinkRow::as_select())
        .first(conn)
        .optional()
}

/// Takes the setup link with hash `token_hash` (it is used once: deleted in
/// the same statement's transaction). None: no such link.
pub fn take_setup_link(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> QueryResult<Option<SetupLinkRow>> {
    let link: Option<SetupLinkRow> = user_setup_links::table
        .find(token_hash)
        .select(SetupLinkRow::as_select())
        .first(conn)
        .optional()?;
    if link.is_some() {
        let deleted = diesel::delete(user_setup_links::table.find(token_hash)).execute(conn)?;
        // Taken by a concurrent transaction in between: not ours.
        if deleted == 0 {
            return Ok(None);
        }
    }
    Ok(link)
}

pub fn drop_setup_links(conn: &mut AnyConnection, user_id: &str) -> QueryResult<()> {
    diesel::delete(user_setup_links::table.filter(user_setup_links::user_id.eq(user_id)))
        .execute(conn)
        .map(|_| ())
}

//! API token strings, stored as their SHA-256 (never the string).

use diesel::prelude::*;

use super::models::{self, ApiTokenRow};
use super::schema::{api_tokens, clients, tenants};
use super::AnyConnection;
use crate::domain::Client;

pub fn insert(conn: &mut AnyConnection, row: &ApiTokenRow) -> QueryResult<()> {
    diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// The token whose hash is `hash`, with its client and the client's tenant
/// path.
pub fn find_by_hash(
    conn: &mut AnyConnection,
    hash: &str,
) -> QueryResult<Option<(ApiTokenRow, Client, String)>> {
    let found: Option<(ApiTokenRow, models::Client, String)> = api_tokens::table
        .inner_join(clients::table.inner_join(tenants::table))
        .filter(api_tokens::token_hash.eq(hash))
        .select((
            ApiTokenRow::as_select(),
            models::Client::as_select(),
            tenants::path,
        ))
        .first(conn)
        .optional()?;
    found
        .map(|(token, client, path)| Ok((token, super::clients::parse(client)?, path)))
        .transpose()
}

/// Marks the token revoked at `now`; false when it already was.
pub fn revoke(conn: &mut AnyConnection, id: &str, now: i64) -> QueryResult<bool> {
    let changed = diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(now)))
    .execute(conn)?;
    Ok(changed > 0)
}

/// The client's token strings, oldest first, `limit` after the `after` id.
pub fn list_for(
    conn: &mut AnyConnection,
    client_id: &str,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<ApiTokenRow>> {
    let mut query = api_tokens::table
        .filter(api_tokens::client_id.eq(client_id))
        .order(api_tokens::id.asc())
        .limit(limit)
        .select(ApiTokenRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(api_tokens::id.gt(after.to_string()));
    }
    query.load(conn)
}

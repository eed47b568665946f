//! Console sessions, server-side, by the SHA-256 of the cookie value.

use diesel::prelude::*;

use super::models::SessionRow;
use super::schema::sessions;
use super::AnyConnection;

pub fn insert(conn: &mut AnyConnection, session: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values(session)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut AnyConnection, session_hash: &str) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(session_hash)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()
}

/// Moves `last_seen_at` forward to `at` (never back).
pub fn touch(conn: &mut AnyConnection, session_hash: &str, at: i64) -> QueryResult<()> {
    diesel::update(
        sessions::table
            .find(session_hash)
            .filter(sessions::last_seen_at.lt(at)),
    )
    .set(sessions::last_seen_at.eq(at))
    .execute(conn)
    .map(|_| ())
}

/// Ends one session. False: there was none.
pub fn delete(conn: &mut AnyConnection, session_hash: &str) -> QueryResult<bool> {
    Ok(diesel::delete(sessions::table.find(session_hash)).execute(conn)? > 0)
}

/// Ends every session of the user but `keep`; returns how many ended.
pub fn delete_for_user(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
) -> QueryResult<usize> {
    match keep {
        Some(keep) => diesel::delete(
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::session_hash.ne(keep)),
        )
        .execute(conn),
        None => diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn),
    }
}

/// Sessions past their absolute expiry or idle limit at `now` go.
pub fn delete_expired(conn: &mut AnyConnection, now: i64, idle_limit: i64) -> QueryResult<usize> {
    diesel::delete(
        sessions::table.filter(
            sessions::expires_at
                .le(now)
                .or(sessions::last_seen_at.le(now - idle_limit)),
        ),
    )
    .execute(conn)
}

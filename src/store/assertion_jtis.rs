//! The single-use record of client assertion ids (API.md section 2): each
//! (issuer, jti) is taken once until the assertion's `exp`, on every node
//! that shares the store. One statement: an insert that a live row of the
//! same key turns into nothing, while a row whose `exp` has passed is taken
//! over (the assertion that used it can no longer be replayed anyway).
//! Namespaced by issuer, so one issuer's ids never block another's.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::schema::assertion_jtis;
use super::AnyConnection;

const TAKE_POSTGRES: &str =
    "INSERT INTO assertion_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE assertion_jtis.expires_at <= $4";
const TAKE_SQLITE: &str = "INSERT INTO assertion_jtis (issuer, jti, expires_at) VALUES (?, ?, ?) \
     ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE assertion_jtis.expires_at <= ?";

/// True when this is the first use of (issuer, jti) still in force at
/// `now`; false for a replay.
pub fn take(
    conn: &mut AnyConnection,
    issuer: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> QueryResult<bool> {
    let rows = match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(TAKE_POSTGRES)
            .bind::<Text, _>(issuer)
            .bind::<Text, _>(jti)
            .bind::<BigInt, _>(expires_at)
            .bind::<BigInt, _>(now)
            .execute(pg)?,
        AnyConnection::Sqlite(lite) => diesel::sql_query(TAKE_SQLITE)
            .bind::<Text, _>(issuer)
            .bind::<Text, _>(jti)
            .bind::<BigInt, _>(expires_at)
            .bind::<BigInt, _>(now)
            .execute(lite)?,
    };
    Ok(rows == 1)
}

/// Removes the records of assertions that expired before `before`, a
/// minute of them per statement (the table holds about an hour of
/// assertions; each statement stays short). Returns how many went.
pub fn prune(conn: &mut AnyConnection, before: i64) -> QueryResult<usize> {
    let mut removed = 0;
    loop {
        let oldest: Option<i64> = assertion_jtis::table
            .select(diesel::dsl::min(assertion_jtis::expires_at))
            .first(conn)?;
        let Some(oldest) = oldest.filter(|o| *o < before) else {
            return Ok(removed);
        };
        let step = before.min(oldest.saturating_add(60));
        removed +=
            diesel::delete(assertion_jtis::table.filter(assertion_jtis::expires_at.lt(step)))
                .execute(conn)?;
    }
}

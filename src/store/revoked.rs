//! Revoked access tokens, by jti, kept until the token would have expired
//! anyway (a JWT cannot be recalled, so the server remembers it refuses it).

use diesel::prelude::*;

use super::models::RevokedAccessToken;
use super::schema::revoked_access_tokens;
use super::AnyConnection;

pub fn is_revoked(conn: &mut AnyConnection, jti: &str) -> QueryResult<bool> {
    Ok(revoked_access_tokens::table
        .find(jti)
        .select(revoked_access_tokens::jti)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

pub fn insert(conn: &mut AnyConnection, row: &RevokedAccessToken) -> QueryResult<()> {
    diesel::insert_into(revoked_access_tokens::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// The jtis still worth refusing at `now` (their tokens not yet expired).
pub fn live(conn: &mut AnyConnection, now: i64) -> QueryResult<Vec<String>> {
    revoked_access_tokens::table
        .filter(revoked_access_tokens::expires_at.gt(now))
        .select(revoked_access_tokens::jti)
        .load(conn)
}

//! Renewal families: which token was renewed from which (API.md section 2,
//! "Renewal"), so that revoking a token reaches every token renewed from it.
//!
//! Renewal and revocation of one token serialise on that token's row: on
//! PostgreSQL both take its row lock (creating the row when an original
//! token has none yet), and a renewal records its successor only if the
//! parent is not revoked at that moment. SQLite's writers are serialised by
//! `BEGIN IMMEDIATE` (`store::write_transaction`), so no lock is needed there.
//!
//! The statements are raw SQL: diesel's DSL has no `INSERT ... ON CONFLICT`
//! or `WITH RECURSIVE` over `MultiConnection`. They are written with
//! PostgreSQL's `$n` placeholders; SQLite reads the same text as `?n`.

use std::borrow::Cow;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::AnyConnection;

pub const KIND_ACCESS_TOKEN: &str = "access_token";
pub const KIND_API_TOKEN: &str = "api_token";

/// A token as its family row records it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// A jti (access token) or an api_tokens id (API token).
    pub token_id: &'a str,
    pub kind: &'static str,
    pub client_id: &'a str,
    pub expires_at: i64,
}

/// A token reached by a revocation through its family.
#[derive(Debug, Clone, QueryableByName)]
pub struct Descendant {
    #[diesel(sql_type = Text)]
    pub token_id: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub client_id: String,
    #[diesel(sql_type = BigInt)]
    pub expires_at: i64,
}

#[derive(QueryableByName)]
struct Hash {
    #[diesel(sql_type = Text)]
    token_hash: String,
}

/// `?n` is SQLite's spelling of PostgreSQL's `$n` (same number, same value).
fn sqlite_text(sql: &'static str) -> Cow<'static, str> {
    Cow::Owned(sql.replace('$', "?"))
}

/// Builds `$query` from `$sql` for the connection's backend and runs `$body`
/// with it and the backend's own connection `$c`.
macro_rules! on_backend {
    ($conn:expr, $sql:expr, |$query:ident, $c:ident| $body:expr) => {
        match $conn {
            AnyConnection::Postgresql($c) => {
                let $query = diesel::sql_query($sql);
                $body
            }
            AnyConnection::Sqlite($c) => {
                let $query = diesel::sql_query(sqlite_text($sql));
                $body
            }
        }
    };
}

/// PostgreSQL, in one statement: lock the parent's row (inserting it for an
/// original token), then insert the child only if the parent is not revoked.
/// `ON CONFLICT DO UPDATE ... WHERE` locks the row even when the condition
/// is false, and then returns nothing.
const RENEW_POSTGRES: &str = "\
WITH parent AS (
    INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at)
    VALUES ($1, $2, NULL, $3, $4, $5)
    ON CONFLICT (token_id) DO UPDATE SET kind = token_families.kind
    WHERE token_families.revoked_at IS NULL
    RETURNING token_id
)
INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at)
SELECT $6, $2, token_id, $3, $7, $5 FROM parent";

/// SQLite: this transaction is the only writer, so a check is enough.
const RENEW_SQLITE: &str = "\
INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at)
SELECT ?1, ?2, ?3, ?4, ?5, ?6
WHERE NOT EXISTS (
    SELECT 1 FROM token_families WHERE token_id = ?3 AND revoked_at IS NOT NULL
)";

/// Records that `child_id` (expiring at `child_expires_at`) was renewed from
/// `parent`. False, with nothing recorded, when the parent has been revoked:
/// the caller must then roll back and refuse the renewal.
pub fn record_renewal(
    conn: &mut AnyConnection,
    parent: Member<'_>,
    child_id: &str,
    child_expires_at: i64,
    now: i64,
) -> QueryResult<bool> {
    let inserted = match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(RENEW_POSTGRES)
            .bind::<Text, _>(parent.token_id)
            .bind::<Text, _>(parent.kind)
            .bind::<Text, _>(parent.client_id)
            .bind::<BigInt, _>(parent.expires_at)
            .bind::<BigInt, _>(now)
            .bind::<Text, _>(child_id)
            .bind::<BigInt, _>(child_expires_at)
            .execute(pg)?,
        AnyConnection::Sqlite(lite) => diesel::sql_query(RENEW_SQLITE)
            .bind::<Text, _>(child_id)
            .bind::<Text, _>(parent.kind)
            .bind::<Text, _>(parent.token_id)
            .bind::<Text, _>(parent.client_id)
            .bind::<BigInt, _>(child_expires_at)
            .bind::<BigInt, _>(now)
            .execute(lite)?,
    };
    Ok(inserted == 1)
}

/// Marks the token revoked, taking its row lock (and creating the row when
/// the token has none): a renewal of it waits for this transaction and then
/// sees it revoked, or this waits for the renewal and then sees its child.
pub fn mark_revoked(conn: &mut AnyConnection, token: Member<'_>, now: i64) -> QueryResult<()> {
    const SQL: &str = "\
INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at, revoked_at)
VALUES ($1, $2, NULL, $3, $4, $5, $5)
ON CONFLICT (token_id) DO UPDATE
SET revoked_at = COALESCE(token_families.revoked_at, excluded.revoked_at)";
    on_backend!(conn, SQL, |query, c| query
        .bind::<Text, _>(token.token_id)
        .bind::<Text, _>(token.kind)
        .bind::<Text, _>(token.client_id)
        .bind::<BigInt, _>(token.expires_at)
        .bind::<BigInt, _>(now)
        .execute(c))?;
    Ok(())
}

/// SQLite: the one writer walks the family and marks it.
const DESCENDANTS_SQLITE: &str = "\
UPDATE token_families SET revoked_at = ?2
WHERE revoked_at IS NULL AND token_id IN (
    WITH RECURSIVE family (id) AS (
        SELECT token_id FROM token_families WHERE parent_id = ?1
        UNION ALL
        SELECT f.token_id FROM token_families f JOIN family ON f.parent_id = family.id
    )
    SELECT id FROM family
)
RETURNING token_id, kind, client_id, expires_at";

/// PostgreSQL: the same, but the rows are locked first in one order, parents
/// before children and then by id, so that two revocations in one family
/// (a token and its successor, revoked at once) cannot deadlock.
const DESCENDANTS_POSTGRES: &str = "\
WITH RECURSIVE family (id, depth) AS (
    SELECT token_id, 1 FROM token_families WHERE parent_id = $1
    UNION ALL
    SELECT f.token_id, family.depth + 1 FROM token_families f JOIN family ON f.parent_id = family.id
),
locked AS (
    SELECT f.token_id FROM token_families f JOIN family ON f.token_id = family.id
    WHERE f.revoked_at IS NULL
    ORDER BY family.depth, f.token_id
    FOR UPDATE OF f
)
UPDATE token_families SET revoked_at = $2
FROM locked WHERE token_families.token_id = locked.token_id
RETURNING token_families.token_id, token_families.kind, token_families.client_id,
    token_families.expires_at";

/// Marks revoked every token renewed from `token_id`, directly or through a
/// chain, that was not revoked yet, and returns them.
///
/// On PostgreSQL a renewal of a descendant may commit while this runs: the
/// lock waits for it, but the new child was not in this statement's
/// snapshot. So it runs again until it finds nothing: by then every member
/// is locked and revoked, and later renewals of them see that.
pub fn revoke_descendants(
    conn: &mut AnyConnection,
    token_id: &str,
    now: i64,
) -> QueryResult<Vec<Descendant>> {
    let mut all = Vec::new();
    loop {
        let found: Vec<Descendant> = match conn {
            AnyConnection::Postgresql(pg) => diesel::sql_query(DESCENDANTS_POSTGRES)
                .bind::<Text, _>(token_id)
                .bind::<BigInt, _>(now)
                .load(pg)?,
            AnyConnection::Sqlite(lite) => diesel::sql_query(DESCENDANTS_SQLITE)
                .bind::<Text, _>(token_id)
                .bind::<BigInt, _>(now)
                .load(lite)?,
        };
        if found.is_empty() {
            return Ok(all);
        }
        all.extend(found);
    }
}

/// Records an access token's jti as revoked (nothing if it already is).
pub fn record_revoked_jti(
    conn: &mut AnyConnection,
    token: &Descendant,
    now: i64,
) -> QueryResult<()> {
    const SQL: &str = "\
INSERT INTO revoked_access_tokens (jti, client_id, expires_at, revoked_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (jti) DO NOTHING";
    on_backend!(conn, SQL, |query, c| query
        .bind::<Text, _>(&token.token_id)
        .bind::<Text, _>(&token.client_id)
        .bind::<BigInt, _>(token.expires_at)
        .bind::<BigInt, _>(now)
        .execute(c))?;
    Ok(())
}

/// Marks an API token revoked; its hash (for the caches) if it was not yet.
pub fn revoke_api_token(
    conn: &mut AnyConnection,
    token_id: &str,
    now: i64,
) -> QueryResult<Option<String>> {
    const SQL: &str = "\
UPDATE api_tokens SET revoked_at = $2
WHERE id = $1 AND revoked_at IS NULL
RETURNING token_hash";
    let found: Vec<Hash> = on_backend!(conn, SQL, |query, c| query
        .bind::<Text, _>(token_id)
        .bind::<BigInt, _>(now)
        .load(c))?;
    Ok(found.into_iter().next().map(|h| h.token_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_the_same_numbered_placeholders() {
        assert_eq!(
            sqlite_text("SELECT $1, $2, $1"),
            "SELECT ?1, ?2, ?1".to_string()
        );
    }
}

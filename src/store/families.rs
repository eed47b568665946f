//! Renewal families: which token was renewed from which (API.md section 2,
//! "Renewal"), so that revoking a token reaches every token renewed from it.
//!
//! Renewal and revocation of one token serialise on that token's row: on
//! PostgreSQL both take its row lock (creating the row when an original
//! token has none yet), and a renewal records its successor only if the
//! parent is not revoked at that moment. SQLite's writers are serialised by
//! `BEGIN IMMEDIATE` (`store::write_transaction`), so no lock is needed there.
//!
//! On PostgreSQL access-token renewals are recorded in batches
//! (`service::renewals`, `record_renewals`): one transaction holds the rows
//! of all its renewals' parents at once, each taken as a lone renewal takes
//! it, so both rules hold for every renewal of a batch. Holding several rows
//! is new, and can deadlock with a revocation, which holds its family's:
//! the order in which a batch takes them makes that rare, and whichever
//! transaction PostgreSQL aborts runs again.
//!
//! The statements are raw SQL: diesel's DSL has no `INSERT ... ON CONFLICT`
//! or `WITH RECURSIVE` over `MultiConnection`. They are written with
//! PostgreSQL's `$n` placeholders; SQLite reads the same text as `?n`.

use std::borrow::Cow;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};

use super::{audit, AnyConnection, Tx};

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

/// One renewal of a batch: the token renewed, its successor, and the audit
/// entry that records the renewal.
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'a> {
    pub parent: Member<'a>,
    /// When the parent was issued: the batch takes its parents' locks in
    /// this order (see `RENEW_MANY_POSTGRES`).
    pub parent_issued_at: i64,
    pub child_id: &'a str,
    pub child_expires_at: i64,
    pub entry: &'a audit::Entry,
}

/// PostgreSQL, for a whole batch in one statement: what `RENEW_POSTGRES`
/// does for one renewal, done for every renewal at once, and the audit entry
/// of each renewal that was recorded, so that the batch costs one round
/// trip besides its BEGIN and COMMIT, whatever its size. The rows come as
/// arrays, so the text is the same for every batch (one prepared statement).
///
/// `parent` takes each parent's row lock once (a token renewed twice in one
/// batch is listed once: `ON CONFLICT DO UPDATE` may not touch a row twice),
/// in the order given: by issue time, then id. A successor is issued no
/// earlier than its parent, so within a chain this is the order in which a
/// revocation locks a family (parents before children, `DESCENDANTS_POSTGRES`),
/// and two batches (two nodes) always lock in the same order. What it cannot
/// rule out (parents issued in the same second, two branches of a family) is
/// a deadlock, which PostgreSQL breaks by aborting one side; the batch is
/// then run again (`service::renewals`).
///
/// `child` inserts a successor only where its parent came back (not
/// revoked), and `audited` files an entry only for a successor inserted,
/// under its tenant's current path or, as `audit::insert` does, the actor's.
/// The renewals returned are exactly those recorded with their entry.
const RENEW_MANY_POSTGRES: &str = "\
WITH parent AS (
    INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at)
    SELECT p.token_id, p.kind, NULL, p.client_id, p.expires_at, $5
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY
        AS p (token_id, kind, client_id, expires_at, place)
    ORDER BY p.place
    ON CONFLICT (token_id) DO UPDATE SET kind = token_families.kind
    WHERE token_families.revoked_at IS NULL
    RETURNING token_id
),
renewal AS (
    SELECT * FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[],
        $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[],
        $17::text[], $18::text[], $19::text[])
        AS r (token_id, parent_id, kind, client_id, expires_at,
            event_id, event_at, actor, actor_tenant_path, ip, action,
            target, tenant_id, details)
),
child AS (
    INSERT INTO token_families (token_id, kind, parent_id, client_id, expires_at, created_at)
    SELECT r.token_id, r.kind, r.parent_id, r.client_id, r.expires_at, $5
    FROM renewal r JOIN parent ON parent.token_id = r.parent_id
    RETURNING token_id
),
audited AS (
    INSERT INTO audit_events (id, at, actor, action, target, tenant_id, tenant_path, ip, details)
    SELECT r.event_id, r.event_at, r.actor, r.action, r.target, r.tenant_id,
        COALESCE(t.path, r.actor_tenant_path), r.ip, r.details
    FROM renewal r JOIN child ON child.token_id = r.token_id
    LEFT JOIN tenants t ON t.id = r.tenant_id
    RETURNING id
)
SELECT r.token_id FROM renewal r JOIN audited ON audited.id = r.event_id";

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = Text)]
    token_id: String,
}

/// Records every renewal of `renewals` whose parent is not revoked, each
/// with its audit entry, in this transaction; for each, whether it was
/// recorded (false: its parent is revoked, nothing of it was written, and
/// its caller must refuse it). The others are recorded all the same.
///
/// On PostgreSQL this is one statement for the whole batch. SQLite (not
/// batched by the server: its one writer does each renewal in a transaction
/// of its own) takes them one by one.
pub fn record_renewals<'a>(
    tx: &mut Tx<'_>,
    renewals: &[Renewal<'a>],
    now: i64,
) -> QueryResult<Vec<bool>> {
    if renewals.is_empty() {
        return Ok(Vec::new());
    }
    tx.audit_within(|conn| match conn {
        AnyConnection::Postgresql(pg) => {
            let mut parents: Vec<&Renewal<'a>> = renewals.iter().collect();
            parents.sort_by(|a, b| {
                (a.parent_issued_at, a.parent.token_id)
                    .cmp(&(b.parent_issued_at, b.parent.token_id))
            });
            parents.dedup_by(|a, b| a.parent.token_id == b.parent.token_id);
            let text = |f: fn(&Renewal<'a>) -> &'a str| -> Vec<&'a str> {
                renewals.iter().map(f).collect()
            };
            let maybe = |f: fn(&Renewal<'a>) -> Option<&'a str>| -> Vec<Option<&'a str>> {
                renewals.iter().map(f).collect()
            };
            let number =
                |f: fn(&Renewal<'a>) -> i64| -> Vec<i64> { renewals.iter().map(f).collect() };
            let recorded: Vec<Recorded> = diesel::sql_query(RENEW_MANY_POSTGRES)
                .bind::<Array<Text>, _>(
                    parents
                        .iter()
                        .map(|r| r.parent.token_id)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Text>, _>(parents.iter().map(|r| r.parent.kind).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(
                    parents
                        .iter()
                        .map(|r| r.parent.client_id)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(
                    parents
                        .iter()
                        .map(|r| r.parent.expires_at)
                        .collect::<Vec<_>>(),
                )
                .bind::<BigInt, _>(now)
                .bind::<Array<Text>, _>(text(|r| r.child_id))
                .bind::<Array<Text>, _>(text(|r| r.parent.token_id))
                .bind::<Array<Text>, _>(text(|r| r.parent.kind))
                .bind::<Array<Text>, _>(text(|r| r.parent.client_id))
                .bind::<Array<BigInt>, _>(number(|r| r.child_expires_at))
                .bind::<Array<Text>, _>(text(|r| &r.entry.id))
                .bind::<Array<BigInt>, _>(number(|r| r.entry.at))
                .bind::<Array<Text>, _>(text(|r| &r.entry.actor))
                .bind::<Array<Text>, _>(text(|r| &r.entry.actor_tenant_path))
                .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.entry.ip.as_deref()))
                .bind::<Array<Text>, _>(text(|r| &r.entry.action))
                .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.entry.target.as_deref()))
                .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.entry.tenant_id.as_deref()))
                .bind::<Array<Text>, _>(text(|r| &r.entry.details))
                .load(pg)?;
            let recorded: std::collections::HashSet<String> =
                recorded.into_iter().map(|r| r.token_id).collect();
            let entries = recorded.len();
            let outcomes = renewals
                .iter()
                .map(|r| recorded.contains(r.child_id))
                .collect();
            Ok((outcomes, entries))
        }
        AnyConnection::Sqlite(_) => {
            let mut outcomes = Vec::with_capacity(renewals.len());
            let mut entries = 0;
            for r in renewals {
                let recorded = record_renewal(conn, r.parent, r.child_id, r.child_expires_at, now)?;
                if recorded {
                    audit::insert(conn, r.entry.clone())?;
                    entries += 1;
                }
                outcomes.push(recorded);
            }
            Ok((outcomes, entries))
        }
    })
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
    use crate::store::Conn;

    fn entry(id: &str, jti: &str) -> audit::Entry {
        audit::Entry {
            id: id.into(),
            at: 0,
            actor: "kwc_1".into(),
            actor_tenant_path: "/tn_root/".into(),
            ip: None,
            action: "token.renew".into(),
            target: Some("kwc_1".into()),
            tenant_id: None,
            details: format!("{{\"jti\":\"{jti}\"}}"),
        }
    }

    fn member(token_id: &str) -> Member<'_> {
        Member {
            token_id,
            kind: KIND_ACCESS_TOKEN,
            client_id: "kwc_1",
            expires_at: 100,
        }
    }

    /// The batch's statement is PostgreSQL's (tests/api/renew.rs runs it);
    /// SQLite's way through a batch keeps the same outcomes.
    #[test]
    fn a_batch_records_each_renewal_of_a_live_token_with_its_entry_and_refuses_the_revoked() {
        let mut db = AnyConnection::Sqlite(
            diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite"),
        );
        super::super::migrate_and(&mut db, |_| Ok(())).expect("migrations");
        mark_revoked(&mut db, member("revoked"), 1).expect("revoke");
        let entries = [
            entry("ev_1", "a2"),
            entry("ev_2", "r2"),
            entry("ev_3", "a3"),
        ];
        let renewal = |parent, child_id, entry| Renewal {
            parent: member(parent),
            parent_issued_at: 0,
            child_id,
            child_expires_at: 200,
            entry,
        };
        let batch = [
            renewal("a", "a2", &entries[0]),
            renewal("revoked", "r2", &entries[1]),
            renewal("a", "a3", &entries[2]),
        ];
        let outcomes = Conn::detached(&mut db)
            .write(|tx| record_renewals(tx, &batch, 2))
            .expect("batch");
        assert_eq!(outcomes, vec![true, false, true]);
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            token_id: String,
        }
        let children: Vec<String> = diesel::sql_query(
            "SELECT token_id FROM token_families WHERE parent_id IS NOT NULL ORDER BY token_id",
        )
        .load::<Row>(&mut db)
        .expect("children")
        .into_iter()
        .map(|r| r.token_id)
        .collect();
        assert_eq!(children, vec!["a2", "a3"]);
        let audited: Vec<String> =
            diesel::sql_query("SELECT id AS token_id FROM audit_events ORDER BY id")
                .load::<Row>(&mut db)
                .expect("entries")
                .into_iter()
                .map(|r| r.token_id)
                .collect();
        assert_eq!(audited, vec!["ev_1", "ev_3"]);
    }

    #[test]
    fn sqlite_reads_the_same_numbered_placeholders() {
        assert_eq!(
            sqlite_text("SELECT $1, $2, $1"),
            "SELECT ?1, ?2, ?1".to_string()
        );
    }
}

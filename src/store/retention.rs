//! What retention removes (API.md section 4, "Retention"), a batch at a
//! time: each function touches at most `limit` rows, picked by key, so that
//! no statement runs long or holds many row locks.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::schema::{
    api_tokens, audit_events, client_federated_subjects, client_secrets, clients, leases,
    revoked_access_tokens, token_families, user_setup_links,
};
use super::AnyConnection;

/// A client due for removal.
#[derive(Debug, Clone, Queryable)]
pub struct DueClient {
    pub client_id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Up to `limit` rows of `$table` expired, or revoked, before `cutoff`, as
/// `$row`: the longest expired first, then the longest revoked. Two index
/// scans that stop at `limit`, not one query with OR: PostgreSQL answers an
/// OR with a bitmap of every due row or a sequential scan from the table's
/// start, and either costs a batch time in proportion to the backlog (or to
/// the rows already purged, dead until vacuumed), not to the batch.
macro_rules! due_by_expiry_then_revocation {
    ($conn:expr, $table:ident, $row:ty, $columns:expr, $cutoff:expr, $limit:expr) => {{
        let (conn, cutoff, limit) = ($conn, $cutoff, $limit);
        let columns = $columns;
        let mut due: Vec<$row> = $table::table
            .filter($table::expires_at.lt(cutoff))
            .order($table::expires_at.asc())
            .limit(limit)
            .select(columns)
            .load(conn)?;
        let room = limit.saturating_sub(due.len() as i64);
        if room > 0 {
            // Revoked and not already due by expiry.
            due.extend(
                $table::table
                    .filter($table::revoked_at.lt(cutoff))
                    .filter(
                        $table::expires_at
                            .is_null()
                            .or($table::expires_at.ge(cutoff)),
                    )
                    .order($table::revoked_at.asc())
                    .limit(room)
                    .select(columns)
                    .load::<$row>(conn)?,
            );
        }
        Ok(due)
    }};
}

/// Clients expired, or revoked, before `cutoff`: `limit` of them.
pub fn due_clients(
    conn: &mut AnyConnection,
    cutoff: i64,
    limit: i64,
) -> QueryResult<Vec<DueClient>> {
    let columns = (
        clients::client_id,
        clients::tenant_id,
        clients::name,
        clients::kind,
        clients::expires_at,
        clients::revoked_at,
    );
    due_by_expiry_then_revocation!(conn, clients, DueClient, columns, cutoff, limit)
}

/// Removes the clients and what hangs off them (secrets, token strings,
/// renewal records); SQLite does not cascade without its pragma, so each
/// child table is cleared here.
pub fn delete_clients(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<usize> {
    diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq_any(ids)))
        .execute(conn)?;
    diesel::delete(api_tokens::table.filter(api_tokens::client_id.eq_any(ids))).execute(conn)?;
    diesel::delete(token_families::table.filter(token_families::client_id.eq_any(ids)))
        .execute(conn)?;
    diesel::delete(
        client_federated_subjects::table.filter(client_federated_subjects::client_id.eq_any(ids)),
    )
    .execute(conn)?;
    diesel::delete(clients::table.filter(clients::client_id.eq_any(ids))).execute(conn)
}

/// An API token string due for removal: its id, client and hash.
#[derive(Debug, Clone, Queryable)]
pub struct DueToken {
    pub id: String,
    pub client_id: String,
    pub token_hash: String,
    pub prefix: String,
    pub tenant_id: String,
}

/// Token strings expired, or revoked, before `cutoff` (of clients that
/// stay): `limit` of them.
pub fn due_api_tokens(
    conn: &mut AnyConnection,
    cutoff: i64,
    limit: i64,
) -> QueryResult<Vec<DueToken>> {
    let columns = (
        api_tokens::id,
        api_tokens::client_id,
        api_tokens::token_hash,
        api_tokens::prefix,
        api_tokens::tenant_id,
    );
    due_by_expiry_then_revocation!(conn, api_tokens, DueToken, columns, cutoff, limit)
}

pub fn delete_api_tokens(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<usize> {
    diesel::delete(token_families::table.filter(token_families::token_id.eq_any(ids)))
        .execute(conn)?;
    diesel::delete(api_tokens::table.filter(api_tokens::id.eq_any(ids))).execute(conn)
}

/// Records that outlived what they record: revocations of access tokens
/// that have expired anyway (a JWT past `exp` is refused without them),
/// renewal records of expired tokens, used-up or expired setup links.
/// At most `limit` of each; returns how many went.
pub fn delete_spent(conn: &mut AnyConnection, now: i64, limit: i64) -> QueryResult<usize> {
    let jtis: Vec<String> = revoked_access_tokens::table
        .filter(revoked_access_tokens::expires_at.lt(now))
        .select(revoked_access_tokens::jti)
        .limit(limit)
        .load(conn)?;
    let mut removed = diesel::delete(
        revoked_access_tokens::table.filter(revoked_access_tokens::jti.eq_any(&jtis)),
    )
    .execute(conn)?;
    let families: Vec<String> = token_families::table
        .filter(token_families::expires_at.lt(now))
        .select(token_families::token_id)
        .limit(limit)
        .load(conn)?;
    removed +=
        diesel::delete(token_families::table.filter(token_families::token_id.eq_any(&families)))
            .execute(conn)?;
    let links: Vec<String> = user_setup_links::table
        .filter(user_setup_links::expires_at.lt(now))
        .select(user_setup_links::token_hash)
        .limit(limit)
        .load(conn)?;
    removed +=
        diesel::delete(user_setup_links::table.filter(user_setup_links::token_hash.eq_any(&links)))
            .execute(conn)?;
    Ok(removed)
}

/// Audit events older than `cutoff`, at most `limit`.
pub fn delete_audit_before(
    conn: &mut AnyConnection,
    cutoff: i64,
    limit: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = audit_events::table
        .filter(audit_events::at.lt(cutoff))
        .select(audit_events::id)
        .limit(limit)
        .load(conn)?;
    diesel::delete(audit_events::table.filter(audit_events::id.eq_any(&ids))).execute(conn)
}

/// How long a purge lease lasts unless renewed: far longer than a batch and
/// the rest after it (at most 5 s), short enough that a purge that died
/// frees it within a minute.
pub const PURGE_LEASE_SECONDS: i64 = 60;

/// Takes or renews the purge lease for `holder`, in the caller's
/// transaction: true when it is now `holder`'s until the store's clock
/// reads `PURGE_LEASE_SECONDS` later, false when another holder's lease has
/// not lapsed (the upsert's WHERE then leaves the row, and no row counts as
/// changed). One purge at a time then holds across servers and through the
/// rests between batches; time is the store's, so servers' clocks need not
/// agree. On PostgreSQL a second claimant waits on the row only while the
/// holder's batch commits, then sees the lease taken.
pub fn claim_purge(conn: &mut AnyConnection, holder: &str) -> QueryResult<bool> {
    let upsert = |placeholder: &str, now: &str| {
        format!(
            "INSERT INTO leases (name, holder, expires_at) \
             VALUES ('purge', {placeholder}, {now} + {PURGE_LEASE_SECONDS}) \
             ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= {now}"
        )
    };
    let changed = match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(upsert(
            "$1",
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)",
        ))
        .bind::<Text, _>(holder)
        .execute(pg)?,
        AnyConnection::Sqlite(lite) => {
            diesel::sql_query(upsert("?", "CAST(strftime('%s', 'now') AS INTEGER)"))
                .bind::<Text, _>(holder)
                .execute(lite)?
        }
    };
    Ok(changed == 1)
}

/// Ends `holder`'s purge lease, if it still holds it, so that the next
/// purge need not wait for it to lapse.
pub fn release_purge(conn: &mut AnyConnection, holder: &str) -> QueryResult<usize> {
    diesel::update(
        leases::table
            .filter(leases::name.eq("purge"))
            .filter(leases::holder.eq(holder)),
    )
    .set(leases::expires_at.eq(0))
    .execute(conn)
}

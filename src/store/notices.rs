//! The expiry notices' outbox (API.md section 4, "Expiry notices"), and the
//! reads that find what is due a notice.

use diesel::prelude::*;

use super::models::NoticeRow;
use super::schema::{api_tokens, clients, notices, tenants};
use super::AnyConnection;

/// A credential that may be due a notice: a client secret's client, or an
/// API token client's newest string.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub client_id: String,
    pub name: String,
    pub kind: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub tenant_path: String,
    pub owner_email: String,
    pub can_renew: bool,
    /// The API token string's id and prefix; None for a client secret.
    pub token: Option<(String, String)>,
    pub expires_at: i64,
}

type ClientCols = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<i64>,
);

/// Active clients with an owner email whose credential expires within
/// `[from, to]`: client secrets by the client's expiry, API tokens by the
/// expiry of their newest string (a string a reissue replaced gets none).
/// `owned_only`: only those with an owner email (their notices); otherwise
/// all of them (the owners' summaries), `owner_email` then maybe empty.
pub fn candidates(
    conn: &mut AnyConnection,
    from: i64,
    to: i64,
    owned_only: bool,
) -> QueryResult<Vec<Candidate>> {
    let mut found = Vec::new();
    let mut secrets_query = clients::table
        .inner_join(tenants::table)
        .filter(clients::kind.eq("client_credentials"))
        .filter(clients::status.eq("active"))
        .filter(clients::expires_at.between(from, to))
        .into_boxed();
    if owned_only {
        secrets_query = secrets_query.filter(clients::owner_email.is_not_null());
    }
    let secrets: Vec<ClientCols> = secrets_query
        .select((
            clients::client_id,
            clients::name,
            clients::kind,
            clients::tenant_id,
            tenants::name,
            tenants::path,
            clients::owner_email,
            clients::can_renew,
            clients::expires_at,
        ))
        .load(conn)?;
    for (client_id, name, kind, tenant_id, tenant_name, tenant_path, email, can_renew, at) in
        secrets
    {
        if let Some(expires_at) = at {
            let owner_email = email.unwrap_or_default();
            found.push(Candidate {
                client_id,
                name,
                kind,
                tenant_id,
                tenant_name,
                tenant_path,
                owner_email,
                can_renew,
                token: None,
                expires_at,
            });
        }
    }
    let mut strings_query = api_tokens::table
        .inner_join(clients::table)
        .filter(clients::kind.eq("api_token"))
        .filter(clients::status.eq("active"))
        .filter(api_tokens::revoked_at.is_null())
        .into_boxed();
    if owned_only {
        strings_query = strings_query.filter(clients::owner_email.is_not_null());
    }
    let strings: Vec<(String, String, i64, i64, String)> = strings_query
        .filter(api_tokens::expires_at.between(from, to))
        .select((
            api_tokens::id,
            api_tokens::client_id,
            api_tokens::issued_at,
            api_tokens::expires_at,
            api_tokens::prefix,
        ))
        .load(conn)?;
    for (token_id, client_id, issued_at, expires_at, prefix) in strings {
        // Only the newest string of its client is the credential.
        let newer: i64 = api_tokens::table
            .filter(api_tokens::client_id.eq(&client_id))
            .filter(api_tokens::issued_at.gt(issued_at))
            .count()
            .get_result(conn)?;
        if newer > 0 {
            continue;
        }
        let row: Option<ClientCols> = clients::table
            .inner_join(tenants::table)
            .filter(clients::client_id.eq(&client_id))
            .select((
                clients::client_id,
                clients::name,
                clients::kind,
                clients::tenant_id,
                tenants::name,
                tenants::path,
                clients::owner_email,
                clients::can_renew,
                clients::expires_at,
            ))
            .first(conn)
            .optional()?;
        if let Some((
            client_id,
            name,
            kind,
            tenant_id,
            tenant_name,
            tenant_path,
            email,
            can_renew,
            _,
        )) = row
        {
            found.push(Candidate {
                client_id,
                name,
                kind,
                tenant_id,
                tenant_name,
                tenant_path,
                owner_email: email.unwrap_or_default(),
                can_renew,
                token: Some((token_id, prefix)),
                expires_at,
            });
        }
    }
    Ok(found)
}

/// Tenants with owners to send a summary to: (id, name, path, owner_emails JSON).
pub fn tenants_with_owners(
    conn: &mut AnyConnection,
) -> QueryResult<Vec<(String, String, String, String)>> {
    tenants::table
        .filter(tenants::owner_emails.ne("[]"))
        .select((
            tenants::id,
            tenants::name,
            tenants::path,
            tenants::owner_emails,
        ))
        .load(conn)
}

/// When the tenant's last summary was recorded.
pub fn last_summary(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Option<i64>> {
    notices::table
        .filter(notices::target.eq(tenant_id))
        .filter(notices::kind.eq("summary"))
        .select(diesel::dsl::max(notices::created_at))
        .first(conn)
}

/// Records `row` unless a notice with its key exists. True: recorded now.
pub fn record(conn: &mut AnyConnection, row: &NoticeRow) -> QueryResult<bool> {
    let exists: i64 = notices::table
        .filter(notices::target.eq(&row.target))
        .filter(notices::token_id.eq(&row.token_id))
        .filter(notices::kind.eq(&row.kind))
        .filter(notices::threshold.eq(row.threshold))
        .filter(notices::expires_at.eq(row.expires_at))
        .filter(notices::recipient.eq(&row.recipient))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(notices::table)
        .values(row)
        .execute(conn)
        .map(|n| n > 0)
}

/// Whether anything with `kind` was recorded for `target` (a summary's
/// tenant) at or after `since`.
pub fn recorded_since(
    conn: &mut AnyConnection,
    target: &str,
    kind: &str,
    since: i64,
) -> QueryResult<bool> {
    let n: i64 = notices::table
        .filter(notices::target.eq(target))
        .filter(notices::kind.eq(kind))
        .filter(notices::created_at.ge(since))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Claims up to `limit` notices due at `at` for `lease` seconds: on
/// PostgreSQL rows another server has locked are skipped (`FOR UPDATE SKIP
/// LOCKED`); SQLite's one writer does the same. Call inside a transaction.
pub fn claim_due(
    conn: &mut AnyConnection,
    at: i64,
    lease: i64,
    limit: i64,
) -> QueryResult<Vec<NoticeRow>> {
    let due = notices::table
        .filter(notices::status.eq("pending"))
        .filter(notices::next_attempt_at.le(at))
        .filter(
            notices::claimed_until
                .is_null()
                .or(notices::claimed_until.lt(at)),
        )
        .order(notices::next_attempt_at)
        .limit(limit)
        .select(notices::id);
    let ids: Vec<String> = match conn {
        AnyConnection::Postgresql(pg) => due.for_update().skip_locked().load(pg)?,
        AnyConnection::Sqlite(lite) => due.load(lite)?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(notices::table.filter(notices::id.eq_any(&ids)))
        .set(notices::claimed_until.eq(Some(at + lease)))
        .execute(conn)?;
    notices::table
        .filter(notices::id.eq_any(&ids))
        .order(notices::next_attempt_at)
        .select(NoticeRow::as_select())
        .load(conn)
}

pub fn mark_sent(conn: &mut AnyConnection, id: &str, at: i64) -> QueryResult<()> {
    diesel::update(notices::table.find(id))
        .set((
            notices::status.eq("sent"),
            notices::sent_at.eq(Some(at)),
            notices::attempts.eq(notices::attempts + 1),
            notices::claimed_until.eq(None::<i64>),
            notices::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .map(|_| ())
}

/// A failed attempt: retried at `next_attempt_at`, or, when `give_up`, kept
/// as failed.
pub fn mark_failed(
    conn: &mut AnyConnection,
    id: &str,
    error: &str,
    next_attempt_at: i64,
    give_up: bool,
) -> QueryResult<()> {
    diesel::update(notices::table.find(id))
        .set((
            notices::status.eq(if give_up { "failed" } else { "pending" }),
            notices::attempts.eq(notices::attempts + 1),
            notices::next_attempt_at.eq(next_attempt_at),
            notices::claimed_until.eq(None::<i64>),
            notices::last_error.eq(Some(error)),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Notices filed at or below tenant path `path`, newest first.
pub fn list(
    conn: &mut AnyConnection,
    path: &str,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<NoticeRow>> {
    let mut query = notices::table
        .filter(
            notices::tenant_path
                .like(super::tenants::subtree_pattern(path))
                .escape('\\'),
        )
        .order(notices::id.desc())
        .limit(limit)
        .select(NoticeRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(notices::id.lt(after.to_string()));
    }
    query.load(conn)
}

/// How many notices are waiting to be sent.
pub fn pending(conn: &mut AnyConnection) -> QueryResult<i64> {
    notices::table
        .filter(notices::status.eq("pending"))
        .count()
        .get_result(conn)
}

/// Sent notices older than `cutoff`, at most `limit` (retention).
pub fn delete_sent_before(conn: &mut AnyConnection, cutoff: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<String> = notices::table
        .filter(notices::status.eq("sent"))
        .filter(notices::sent_at.lt(cutoff))
        .select(notices::id)
        .limit(limit)
        .load(conn)?;
    diesel::delete(notices::table.filter(notices::id.eq_any(&ids))).execute(conn)
}

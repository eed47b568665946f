//! Client rows and their secrets. A client's API token strings are in
//! `api_tokens`; its renewal families in `families`.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;

use super::models::{self, ClientSecret};
use super::schema::{api_tokens, client_federated_subjects, client_secrets, clients, tenants};
use super::tenants::subtree_pattern;
use super::AnyConnection;
use crate::domain::{Client, ClientStatus};

const STATUS_ACTIVE: &str = ClientStatus::Active.as_str();
const STATUS_DISABLED: &str = ClientStatus::Disabled.as_str();
const STATUS_REVOKED: &str = ClientStatus::Revoked.as_str();

/// Rows are parsed once, here: a corrupt one fails the read.
pub(super) fn parse(row: models::Client) -> QueryResult<Client> {
    Ok(Client::try_from(row)?)
}

/// The client and its tenant's path.
pub fn find_with_path(
    conn: &mut AnyConnection,
    client_id: &str,
) -> QueryResult<Option<(Client, String)>> {
    let found: Option<(models::Client, String)> = clients::table
        .inner_join(tenants::table)
        .filter(clients::client_id.eq(client_id))
        .select((models::Client::as_select(), tenants::path))
        .first(conn)
        .optional()?;
    found.map(|(row, path)| Ok((parse(row)?, path))).transpose()
}

/// Which clients a list shows, by the status a caller sees (`expired` is
/// derived from `expires_at` at `now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Everything but revoked (the default).
    NotRevoked,
    All,
    Active,
    Disabled,
    Revoked,
    Expired,
}

#[derive(Debug, Clone)]
pub struct ListFilter {
    pub status: StatusFilter,
    pub kind: Option<String>,
    pub tenant_id: Option<String>,
    pub role: Option<String>,
    pub user_id: Option<String>,
}

/// Clients at or below tenant path `path`, in id order, `limit` after the
/// `after` id.
pub fn list_under(
    conn: &mut AnyConnection,
    path: &str,
    filter: &ListFilter,
    now: i64,
    limit: i64,
    after: Option<&str>,
) -> QueryResult<Vec<Client>> {
    let mut query = clients::table
        .inner_join(tenants::table)
        .filter(tenants::path.like(subtree_pattern(path)).escape('\\'))
        .order(clients::client_id.asc())
        .select(models::Client::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(clients::client_id.gt(after.to_string()));
    }
    if let Some(kind) = &filter.kind {
        query = query.filter(clients::kind.eq(kind.clone()));
    }
    if let Some(role) = &filter.role {
        query = query.filter(clients::role.eq(role.clone()));
    }
    if let Some(tenant_id) = &filter.tenant_id {
        query = query.filter(clients::tenant_id.eq(tenant_id.clone()));
    }
    if let Some(user_id) = &filter.user_id {
        query = query.filter(clients::user_id.eq(user_id.clone()));
    }
    let unexpired = clients::expires_at
        .is_null()
        .or(clients::expires_at.gt(now));
    query = match filter.status {
        StatusFilter::All => query,
        StatusFilter::NotRevoked => query.filter(clients::status.ne(STATUS_REVOKED)),
        StatusFilter::Revoked => query.filter(clients::status.eq(STATUS_REVOKED)),
        StatusFilter::Expired => query
            .filter(clients::status.ne(STATUS_REVOKED))
            .filter(clients::expires_at.le(now)),
        StatusFilter::Active => query
            .filter(clients::status.eq(STATUS_ACTIVE))
            .filter(unexpired),
        StatusFilter::Disabled => query
            .filter(clients::status.eq(STATUS_DISABLED))
            .filter(unexpired),
    };
    let rows: Vec<models::Client> = query.limit(limit).load(conn)?;
    rows.into_iter().map(parse).collect()
}

pub fn insert(conn: &mut AnyConnection, client: &Client) -> QueryResult<()> {
    diesel::insert_into(clients::table)
        .values(&models::Client::from(client))
        .execute(conn)?;
    index_federated_subjects(conn, client)
}

/// Keeps `client_federated_subjects` (the lookup by issuer and subject) the
/// same list as the client's `federated_subjects` column.
fn index_federated_subjects(conn: &mut AnyConnection, client: &Client) -> QueryResult<()> {
    let id = client.client_id.as_str();
    diesel::delete(
        client_federated_subjects::table.filter(client_federated_subjects::client_id.eq(id)),
    )
    .execute(conn)?;
    for subject in &client.federated_subjects.0 {
        diesel::insert_into(client_federated_subjects::table)
            .values((
                client_federated_subjects::issuer.eq(&subject.issuer),
                client_federated_subjects::subject.eq(&subject.subject),
                client_federated_subjects::client_id.eq(id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The clients that list (issuer, subject) among their federated subjects.
pub fn with_federated_subject(
    conn: &mut AnyConnection,
    issuer: &str,
    subject: &str,
) -> QueryResult<Vec<String>> {
    client_federated_subjects::table
        .filter(client_federated_subjects::issuer.eq(issuer))
        .filter(client_federated_subjects::subject.eq(subject))
        .select(client_federated_subjects::client_id)
        .order(client_federated_subjects::client_id)
        .limit(100)
        .load(conn)
}

/// Bumps `version` from `version` (and sets `updated_at`), only if nobody
/// changed the client since it was read at that version. False: somebody did.
pub fn claim_version(
    conn: &mut AnyConnection,
    client_id: &str,
    version: i64,
    now: i64,
) -> QueryResult<bool> {
    let claimed = diesel::update(
        clients::table
            .find(client_id)
            .filter(clients::version.eq(version)),
    )
    .set((
        clients::version.eq(version + 1),
        clients::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(claimed > 0)
}

/// Writes every column of `client` (after `claim_version`).
pub fn save(conn: &mut AnyConnection, client: &Client) -> QueryResult<()> {
    diesel::update(clients::table.find(client.client_id.as_str()))
        .set(&models::Client::from(client))
        .execute(conn)?;
    index_federated_subjects(conn, client)
}

pub fn set_status(conn: &mut AnyConnection, client: &Client) -> QueryResult<()> {
    diesel::update(clients::table.find(client.client_id.as_str()))
        .set((
            clients::status.eq(client.status.as_str()),
            clients::revoked_at.eq(client.revoked_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Deletes the client with its secrets and API token strings.
pub fn delete(conn: &mut AnyConnection, client_id: &str) -> QueryResult<()> {
    diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq(client_id)))
        .execute(conn)?;
    diesel::delete(api_tokens::table.filter(api_tokens::client_id.eq(client_id))).execute(conn)?;
    diesel::delete(
        client_federated_subjects::table.filter(client_federated_subjects::client_id.eq(client_id)),
    )
    .execute(conn)?;
    diesel::delete(clients::table.find(client_id)).execute(conn)?;
    Ok(())
}

pub fn with_role(conn: &mut AnyConnection, role: &str) -> QueryResult<Vec<Client>> {
    let rows: Vec<models::Client> = clients::table
        .filter(clients::role.eq(role))
        .select(models::Client::as_select())
        .load(conn)?;
    rows.into_iter().map(parse).collect()
}

pub fn count_with_role(conn: &mut AnyConnection, role: &str) -> QueryResult<i64> {
    clients::table
        .filter(clients::role.eq(role))
        .count()
        .get_result(conn)
}

/// New scopes for `client` (its role changed), as a new version.
pub fn set_scopes(
    conn: &mut AnyConnection,
    client: &Client,
    scopes: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::update(clients::table.find(client.client_id.as_str()))
        .set((
            clients::scopes.eq(scopes),
            clients::version.eq(client.version + 1),
            clients::updated_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The client's secrets: the current one and those still in their grace.
pub fn secrets_of(conn: &mut AnyConnection, client_id: &str) -> QueryResult<Vec<ClientSecret>> {
    client_secrets::table
        .filter(client_secrets::client_id.eq(client_id))
        .select(ClientSecret::as_select())
        .load(conn)
}

pub fn insert_secret(conn: &mut AnyConnection, secret: &ClientSecret) -> QueryResult<()> {
    diesel::insert_into(client_secrets::table)
        .values(secret)
        .execute(conn)
        .map(|_| ())
}

/// Every secret of the client stops now.
pub fn drop_secrets(conn: &mut AnyConnection, client_id: &str) -> QueryResult<()> {
    diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq(client_id)))
        .execute(conn)
        .map(|_| ())
}

/// Secrets already expired go; live ones keep working until `until` at the
/// latest.
pub fn start_grace(
    conn: &mut AnyConnection,
    client_id: &str,
    now: i64,
    until: i64,
) -> QueryResult<()> {
    diesel::delete(
        client_secrets::table
            .filter(client_secrets::client_id.eq(client_id))
            .filter(client_secrets::expires_at.le(now)),
    )
    .execute(conn)?;
    diesel::update(
        client_secrets::table
            .filter(client_secrets::client_id.eq(client_id))
            .filter(
                client_secrets::expires_at
                    .is_null()
                    .or(client_secrets::expires_at.gt(until)),
            ),
    )
    .set(client_secrets::expires_at.eq(Some(until)))
    .execute(conn)?;
    Ok(())
}

/// Writes the batched `last_used_at` times; an older time never overwrites a
/// newer one. PostgreSQL takes each batch in one statement (arrays unnested);
/// SQLite, local and single-node, a statement per client in one transaction.
pub fn touch_last_used(conn: &mut AnyConnection, seen: &[(String, i64)]) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        use diesel::sql_types::{Array, BigInt, Text};
        for chunk in seen.chunks(5_000) {
            let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
            let ats: Vec<i64> = chunk.iter().map(|(_, at)| *at).collect();
            diesel::sql_query(
                "UPDATE clients SET last_used_at = v.at \
                 FROM (SELECT unnest($1::text[]) AS id, unnest($2::bigint[]) AS at) AS v \
                 WHERE clients.client_id = v.id \
                 AND (clients.last_used_at IS NULL OR clients.last_used_at < v.at)",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<BigInt>, _>(ats)
            .execute(pg)?;
        }
        return Ok(());
    }
    conn.transaction(|conn| {
        for (client_id, at) in seen {
            diesel::update(
                clients::table.find(client_id).filter(
                    clients::last_used_at
                        .is_null()
                        .or(clients::last_used_at.lt(*at)),
                ),
            )
            .set(clients::last_used_at.eq(Some(*at)))
            .execute(conn)?;
        }
        Ok(())
    })
}

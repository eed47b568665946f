//! The state behind the OAuth endpoints: client secrets, API tokens and
//! access-token revocation. Everything here answers "does this credential
//! work right now", so every check reads the store's current state.

use std::sync::Arc;

use diesel::prelude::*;

use super::clients::{self, is_usable, KIND_API_TOKEN};
use super::{audit, now, Actor, ServiceResult};
use crate::store::models::{ApiTokenRow, Client, ClientSecret, RevokedAccessToken};
use crate::store::schema::{
    api_tokens, client_secrets, clients as clients_table, revoked_access_tokens, tenants,
};
use crate::store::{write_transaction, AnyConnection};
use crate::tokens::jwt::AccessClaims;
use crate::tokens::opaque::{self, hashes_equal, sha256_hex, Secret};

/// A client as authentication sees it: the row and its tenant's path.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client: Client,
    pub tenant_path: String,
}

/// The client and its secrets (current and those still in their grace time).
pub fn load_for_secret_check(
    conn: &mut AnyConnection,
    client_id: &str,
) -> QueryResult<Option<(ClientRecord, Vec<ClientSecret>)>> {
    let Some((client, tenant_path)) = clients::find_with_path(conn, client_id)? else {
        return Ok(None);
    };
    let secrets = client_secrets::table
        .filter(client_secrets::client_id.eq(client_id))
        .select(ClientSecret::as_select())
        .load(conn)?;
    Ok(Some((
        ClientRecord {
            client,
            tenant_path,
        },
        secrets,
    )))
}

/// Whether `presented` is one of the client's live secrets. Every candidate
/// is compared, in constant time, so timing says nothing about which matched.
pub fn secret_matches(secrets: &[ClientSecret], presented: &str, now: i64) -> bool {
    let presented_hash = sha256_hex(presented.as_bytes());
    let mut matched = false;
    for secret in secrets {
        let live = secret.expires_at.is_none_or(|until| now < until);
        matched |= hashes_equal(&secret.secret_hash, &presented_hash) && live;
    }
    matched
}

/// An API token with its client, found by the hash of the presented string.
#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub token: ApiTokenRow,
    pub owner: Arc<ClientRecord>,
}

impl ApiTokenRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.token.revoked_at.is_none()
            && self.token.expires_at > now
            && self.owner.client.kind == KIND_API_TOKEN
            && is_usable(&self.owner.client, now)
    }
}

pub fn find_api_token(
    conn: &mut AnyConnection,
    presented: &str,
) -> QueryResult<Option<ApiTokenRecord>> {
    // The checksum rules out typos and garbage without touching the store.
    if !opaque::is_well_formed(presented, opaque::API_TOKEN_PREFIX) {
        return Ok(None);
    }
    let hash = sha256_hex(presented.as_bytes());
    let found = api_tokens::table
        .inner_join(clients_table::table.inner_join(tenants::table))
        .filter(api_tokens::token_hash.eq(&hash))
        .select((ApiTokenRow::as_select(), Client::as_select(), tenants::path))
        .first::<(ApiTokenRow, Client, String)>(conn)
        .optional()?;
    // The lookup is by hash; compare again in constant time all the same.
    Ok(found
        .filter(|(row, _, _)| hashes_equal(&row.token_hash, &hash))
        .map(|(token, client, tenant_path)| ApiTokenRecord {
            token,
            owner: Arc::new(ClientRecord {
                client,
                tenant_path,
            }),
        }))
}

/// The state of the client behind an access token, and whether the token's
/// jti was revoked.
pub fn access_token_state(
    conn: &mut AnyConnection,
    claims: &AccessClaims,
) -> QueryResult<Option<(ClientRecord, bool)>> {
    let Some((client, tenant_path)) = clients::find_with_path(conn, &claims.client_id)? else {
        return Ok(None);
    };
    let revoked = revoked_access_tokens::table
        .find(&claims.jti)
        .select(revoked_access_tokens::jti)
        .first::<String>(conn)
        .optional()?
        .is_some();
    Ok(Some((
        ClientRecord {
            client,
            tenant_path,
        },
        revoked,
    )))
}

/// Whether the access token works right now: its client is usable, its jti
/// not revoked. (Signature and expiry were checked by `jwt::verify`.)
pub fn access_token_is_active(
    conn: &mut AnyConnection,
    claims: &AccessClaims,
) -> QueryResult<Option<ClientRecord>> {
    Ok(
        access_token_state(conn, claims)?.and_then(|(record, revoked)| {
            (!revoked && is_usable(&record.client, now())).then_some(record)
        }),
    )
}

/// Records the jti as revoked (idempotent), audited.
pub fn revoke_access_token(
    conn: &mut AnyConnection,
    actor: &Actor,
    claims: &AccessClaims,
    tenant_id: &str,
) -> ServiceResult<()> {
    write_transaction(conn, |conn| {
        let already = revoked_access_tokens::table
            .find(&claims.jti)
            .select(revoked_access_tokens::jti)
            .first::<String>(conn)
            .optional()?;
        if already.is_some() {
            return Ok(());
        }
        crate::store::changes::announce(
            conn,
            crate::store::changes::Change::Jti(claims.jti.clone()),
        )?;
        diesel::insert_into(revoked_access_tokens::table)
            .values(&RevokedAccessToken {
                jti: claims.jti.clone(),
                client_id: claims.client_id.clone(),
                expires_at: claims.exp,
                revoked_at: now(),
            })
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "token.revoke",
            Some(&claims.client_id),
            Some(tenant_id),
            serde_json::json!({"token_kind": "access_token", "jti": claims.jti}),
        )
    })
}

/// Marks the API token revoked (idempotent), audited.
pub fn revoke_api_token(
    conn: &mut AnyConnection,
    actor: &Actor,
    record: &ApiTokenRecord,
) -> ServiceResult<()> {
    write_transaction(conn, |conn| {
        let changed = diesel::update(
            api_tokens::table
                .find(&record.token.id)
                .filter(api_tokens::revoked_at.is_null()),
        )
        .set(api_tokens::revoked_at.eq(Some(now())))
        .execute(conn)?;
        if changed == 0 {
            return Ok(());
        }
        crate::store::changes::announce(
            conn,
            crate::store::changes::Change::ApiToken(record.token.token_hash.clone()),
        )?;
        audit::record(
            conn,
            actor,
            "token.revoke",
            Some(&record.owner.client.client_id),
            Some(&record.owner.client.tenant_id),
            serde_json::json!({"token_kind": "api_token", "token_id": record.token.id, "prefix": record.token.prefix}),
        )
    })
}

/// A new API token with the same scope, audience and tenant as `record`, its
/// expiry from the client's current `token_lifetime`. The old one stays valid.
pub fn renew_api_token(
    conn: &mut AnyConnection,
    actor: &Actor,
    record: &ApiTokenRecord,
) -> ServiceResult<(ApiTokenRow, Secret)> {
    write_transaction(conn, |conn| {
        // Re-read the client inside the transaction: a change that landed
        // since the check must win.
        let client: Client = clients_table::table
            .find(&record.owner.client.client_id)
            .select(Client::as_select())
            .first(conn)?;
        let audience: Vec<String> =
            serde_json::from_str(&record.token.audience).unwrap_or_default();
        let (row, token) = clients::insert_api_token(
            conn,
            &client,
            &record.token.scope,
            &audience,
            &record.token.tenant_id,
            now(),
        )?;
        audit::record(
            conn,
            actor,
            "token.renew",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"token_kind": "api_token", "from_token_id": record.token.id, "token_id": row.id}),
        )?;
        Ok((row, token))
    })
}

/// Audits the renewal of an access token (the new one is a JWT: nothing to store).
pub fn record_access_token_renewal(
    conn: &mut AnyConnection,
    actor: &Actor,
    client: &Client,
    old_jti: &str,
    new_jti: &str,
) -> ServiceResult<()> {
    write_transaction(conn, |conn| {
        audit::record(
            conn,
            actor,
            "token.renew",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"token_kind": "access_token", "from_jti": old_jti, "jti": new_jti}),
        )
    })
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
                clients_table::table.find(client_id).filter(
                    clients_table::last_used_at
                        .is_null()
                        .or(clients_table::last_used_at.lt(*at)),
                ),
            )
            .set(clients_table::last_used_at.eq(Some(*at)))
            .execute(conn)?;
        }
        Ok(())
    })
}

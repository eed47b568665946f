//! The state behind the OAuth endpoints: client secrets, API tokens and
//! access-token revocation. Everything here answers "does this credential
//! work right now", so every check reads the store's current state.

use std::sync::Arc;

use diesel::QueryResult;

use super::clients::{self, is_usable};
use super::{audit, now, Actor, ServiceError, ServiceResult};
use crate::directory::ClientEntry;
use crate::domain::{Client, ClientKind};
use crate::store::changes::Change;
use crate::store::families::{self, Member, KIND_ACCESS_TOKEN};
use crate::store::models::{ApiTokenRow, ClientSecret, RevokedAccessToken};
use crate::store::{api_tokens, clients as store_clients, revoked};
use crate::store::{AnyConnection, Conn, Tx};
use crate::tokens::jwt::AccessClaims;
use crate::tokens::opaque::{self, hashes_equal, sha256_hex, Secret};

/// A client as read for authentication: the row and its tenant's path.
/// The directory keeps it in compact form (`directory::ClientEntry`).
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
    let Some((client, tenant_path)) = store_clients::find_with_path(conn, client_id)? else {
        return Ok(None);
    };
    let secrets = store_clients::secrets_of(conn, client_id)?;
    Ok(Some((
        ClientRecord {
            client,
            tenant_path,
        },
        secrets,
    )))
}

/// An API token with its client, as the directory keeps them.
#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub token: ApiTokenRow,
    pub owner: Arc<ClientEntry>,
}

impl ApiTokenRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.token.revoked_at.is_none()
            && self.token.expires_at > now
            && self.owner.kind == ClientKind::ApiToken
            && self.owner.is_usable(now)
    }
}

/// An API token and its client, found by the hash of the presented string.
pub fn find_api_token(
    conn: &mut AnyConnection,
    presented: &str,
) -> QueryResult<Option<(ApiTokenRow, ClientRecord)>> {
    // The checksum rules out typos and garbage without touching the store.
    if !opaque::is_well_formed(presented, opaque::API_TOKEN_PREFIX) {
        return Ok(None);
    }
    let hash = sha256_hex(presented.as_bytes());
    let found = api_tokens::find_by_hash(conn, &hash)?;
    // The lookup is by hash; compare again in constant time all the same.
    Ok(found
        .filter(|(row, _, _)| hashes_equal(&row.token_hash, &hash))
        .map(|(token, client, tenant_path)| {
            (
                token,
                ClientRecord {
                    client,
                    tenant_path,
                },
            )
        }))
}

/// Records the jti as revoked (idempotent), with every token renewed from
/// it, audited.
pub fn revoke_access_token(
    conn: &mut Conn<'_>,
    actor: &Actor,
    claims: &AccessClaims,
    tenant_id: &str,
) -> ServiceResult<()> {
    let member = Member {
        token_id: &claims.jti,
        kind: KIND_ACCESS_TOKEN,
        client_id: &claims.client_id,
        expires_at: claims.exp,
    };
    let details = serde_json::json!({"token_kind": "access_token", "jti": claims.jti});
    again_if_contended(|| {
        conn.write(|tx| {
            revoke_with_family(tx, actor, member, tenant_id, details.clone(), |tx, ts| {
                if revoked::is_revoked(tx, &claims.jti)? {
                    return Ok(false);
                }
                tx.announce(Change::Jti(claims.jti.clone()))?;
                revoked::insert(
                    tx,
                    &RevokedAccessToken {
                        jti: claims.jti.clone(),
                        client_id: claims.client_id.clone(),
                        expires_at: claims.exp,
                        revoked_at: ts,
                    },
                )?;
                Ok(true)
            })
        })
    })
}

/// Marks the API token revoked (idempotent), with every token renewed from
/// it, audited in its client's tenant.
pub fn revoke_api_token(
    conn: &mut Conn<'_>,
    actor: &Actor,
    token: &ApiTokenRow,
    tenant_id: &str,
) -> ServiceResult<()> {
    let member = Member {
        token_id: &token.id,
        kind: families::KIND_API_TOKEN,
        client_id: &token.client_id,
        expires_at: token.expires_at,
    };
    let details = serde_json::json!({
        "token_kind": "api_token",
        "token_id": token.id,
        "prefix": token.prefix,
    });
    again_if_contended(|| {
        conn.write(|tx| {
            revoke_with_family(tx, actor, member, tenant_id, details.clone(), |tx, ts| {
                if !api_tokens::revoke(tx, &token.id, ts)? {
                    return Ok(false);
                }
                tx.announce(Change::ApiToken(token.token_hash.clone()))?;
                Ok(true)
            })
        })
    })
}

/// How many times a revocation is run in all when PostgreSQL aborts it for
/// a deadlock.
const REVOCATION_ATTEMPTS: u32 = 3;

/// Runs `revocation` again when PostgreSQL aborted it for a deadlock (nothing
/// of it was written then). A renewal batch (`service::renewals`) holds
/// several tokens' rows at once, and may hold one of this family's while it
/// waits for another that this revocation holds; PostgreSQL then aborts one
/// of the two, most often the batch (it waits first), which runs again
/// itself. Before batches a revocation could not be part of a deadlock.
fn again_if_contended(mut revocation: impl FnMut() -> ServiceResult<()>) -> ServiceResult<()> {
    let mut attempt = 1;
    loop {
        match revocation() {
            Err(ServiceError::Contended(cause)) if attempt < REVOCATION_ATTEMPTS => {
                log::info!("revocation aborted ({cause}); running it again");
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// A revocation: `revoke_self` revokes the token itself (false: it already
/// was, and nothing more happens), then every token renewed from it goes
/// too, and one audit entry says which.
fn revoke_with_family(
    tx: &mut Tx<'_>,
    actor: &Actor,
    member: Member<'_>,
    tenant_id: &str,
    mut details: serde_json::Value,
    revoke_self: impl FnOnce(&mut Tx<'_>, i64) -> ServiceResult<bool>,
) -> ServiceResult<()> {
    let ts = now();
    // First, so that a renewal of this token racing this transaction either
    // finishes before (and its successor is revoked below) or sees this
    // token revoked.
    families::mark_revoked(tx, member, ts)?;
    if !revoke_self(tx, ts)? {
        return Ok(());
    }
    let renewed = revoke_renewed_from(tx, member.token_id, ts)?;
    details["renewed_tokens_revoked"] = renewed.into();
    audit::record(
        tx,
        actor,
        "token.revoke",
        Some(member.client_id),
        Some(tenant_id),
        details,
    )
}

/// Revokes every token renewed from `token_id`, directly or through a chain,
/// and announces each so that every node's cache drops it. Their ids (jtis
/// and api_tokens ids, never a token) for the audit entry.
fn revoke_renewed_from(tx: &mut Tx<'_>, token_id: &str, ts: i64) -> ServiceResult<Vec<String>> {
    let mut revoked = Vec::new();
    for member in families::revoke_descendants(tx, token_id, ts)? {
        match member.kind.as_str() {
            KIND_ACCESS_TOKEN => {
                families::record_revoked_jti(tx, &member, ts)?;
                tx.announce(Change::Jti(member.token_id.clone()))?;
            }
            families::KIND_API_TOKEN => {
                if let Some(hash) = families::revoke_api_token(tx, &member.token_id, ts)? {
                    tx.announce(Change::ApiToken(hash))?;
                }
            }
            other => {
                return Err(ServiceError::Internal(format!(
                    "token_families row {} has an unknown kind {other:?}",
                    member.token_id
                )))
            }
        }
        revoked.push(member.token_id);
    }
    Ok(revoked)
}

/// Why a renewal was refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    /// The token was revoked (or its client went away) since it was checked.
    #[error("the token is no longer active")]
    Inactive,
    /// The client may no longer renew, or no longer be granted what the
    /// token holds (API.md section 2, "Renewal"); the text says which.
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<diesel::result::Error> for RenewalError {
    fn from(e: diesel::result::Error) -> Self {
        RenewalError::Service(e.into())
    }
}

/// The client behind a renewal, as it is now.
struct CurrentClient<'a> {
    tenant_id: &'a str,
    tenant_path: &'a str,
    audience: &'a [String],
}

impl From<crate::store::StoreError> for RenewalError {
    fn from(e: crate::store::StoreError) -> Self {
        RenewalError::Service(e.into())
    }
}

impl crate::store::StoreFailure for RenewalError {
    fn is_unavailable(&self) -> bool {
        matches!(self, RenewalError::Service(e) if crate::store::StoreFailure::is_unavailable(e))
    }
}

/// What a renewal carries over, checked against the client as it is now: a
/// tenant still within the client's subtree, and audiences the client may
/// still be granted (the issuer always may). The token's tenant is read only
/// when it is not the client's own.
fn check_grant_still_allowed(
    conn: &mut AnyConnection,
    issuer: &str,
    client: CurrentClient<'_>,
    tenant_id: &str,
    audience: &[String],
) -> Result<(), RenewalError> {
    check_audience_still_allowed(issuer, client.audience, audience)?;
    if tenant_id != client.tenant_id {
        let within = super::tenants::find(conn, tenant_id)?
            .is_some_and(|tenant| tenant.path.starts_with(client.tenant_path));
        if !within {
            return Err(RenewalError::Denied(
                "the token's tenant is no longer within the client's tenant".into(),
            ));
        }
    }
    Ok(())
}

/// The audiences part of `check_grant_still_allowed`: it reads nothing.
pub fn check_audience_still_allowed(
    issuer: &str,
    client_audience: &[String],
    audience: &[String],
) -> Result<(), RenewalError> {
    match audience
        .iter()
        .find(|a| a.as_str() != issuer && !client_audience.contains(a))
    {
        Some(lost) => Err(RenewalError::Denied(format!(
            "{lost:?} is no longer an audience of this client"
        ))),
        None => Ok(()),
    }
}

fn json_list(text: &str, what: &str) -> Result<Vec<String>, RenewalError> {
    serde_json::from_str(text).map_err(|e| {
        RenewalError::Service(ServiceError::Internal(format!(
            "stored {what} unreadable: {e}"
        )))
    })
}

/// A new API token with the same scope, audience and tenant as `record`, its
/// expiry from the client's current `token_lifetime`, recorded as renewed
/// from it. The old one stays valid.
pub fn renew_api_token(
    conn: &mut Conn<'_>,
    actor: &Actor,
    issuer: &str,
    record: &ApiTokenRecord,
) -> Result<(ApiTokenRow, Secret), RenewalError> {
    conn.write(|tx| {
        // Re-read the client inside the transaction: a change that landed
        // since the check must win.
        let Some((client, tenant_path)) =
            clients::find_with_path(tx, &record.owner.client_id)?
        else {
            return Err(RenewalError::Inactive);
        };
        let ts = now();
        if !is_usable(&client, ts) {
            return Err(RenewalError::Inactive);
        }
        if !client.can_renew {
            return Err(RenewalError::Denied(
                "renewal is not enabled for this client".into(),
            ));
        }
        let audience = json_list(&record.token.audience, "token audience")?;
        let current = CurrentClient {
            tenant_id: &client.tenant_id,
            tenant_path: &tenant_path,
            audience: client.audience.as_slice(),
        };
        check_grant_still_allowed(tx, issuer, current, &record.token.tenant_id, &audience)?;
        let (row, token) = clients::insert_api_token(
            tx,
            &client,
            &record.token.scope,
            &audience,
            &record.token.tenant_id,
            ts,
        )?;
        let parent = Member {
            token_id: &record.token.id,
            kind: families::KIND_API_TOKEN,
            client_id: &client.client_id,
            expires_at: record.token.expires_at,
        };
        if !families::record_renewal(tx, parent, &row.id, row.expires_at, ts)? {
            return Err(RenewalError::Inactive);
        }
        audit::record(
            tx,
            actor,
            "token.renew",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"token_kind": "api_token", "from_token_id": record.token.id, "token_id": row.id}),
        )?;
        Ok((row, token))
    })
}

/// Records the renewal of an access token (`renewed`, already signed, is a
/// JWT: nothing else to store), audited. `client` is the client's current
/// settings (the directory's entry).
pub fn renew_access_token(
    conn: &mut Conn<'_>,
    actor: &Actor,
    issuer: &str,
    client: &ClientEntry,
    old: &AccessClaims,
    renewed: &AccessClaims,
) -> Result<(), RenewalError> {
    conn.write(|tx| {
        let current = CurrentClient {
            tenant_id: client.tenant_id(),
            tenant_path: client.tenant_path(),
            audience: client.audience(),
        };
        check_grant_still_allowed(tx, issuer, current, &old.tenant, &old.aud.to_vec())?;
        let ts = now();
        let parent = Member {
            token_id: &old.jti,
            kind: KIND_ACCESS_TOKEN,
            client_id: &old.client_id,
            expires_at: old.exp,
        };
        if !families::record_renewal(tx, parent, &renewed.jti, renewed.exp, ts)? {
            return Err(RenewalError::Inactive);
        }
        audit::record(
            tx,
            actor,
            "token.renew",
            Some(&client.client_id),
            Some(client.tenant_id()),
            serde_json::json!({"token_kind": "access_token", "from_jti": old.jti, "jti": renewed.jti}),
        )?;
        Ok(())
    })
}

/// Writes the batched `last_used_at` times (see `store::clients`).
pub fn touch_last_used(conn: &mut AnyConnection, seen: &[(String, i64)]) -> QueryResult<()> {
    store_clients::touch_last_used(conn, seen)
}

//! Who is calling: a client by its secret, or the holder of one of this
//! server's tokens. Shared by introspection, revocation, renewal and the
//! admin API. Lookups go through the directory (memory when it is live).

use std::net::IpAddr;
use std::sync::Arc;

use crate::directory::ClientEntry;
use crate::oauth::client_auth::Presented;
use crate::oauth::OAuthError;
use crate::service::clients::{is_usable, KIND_CLIENT_CREDENTIALS};
use crate::service::credentials::{self, ApiTokenRecord, ClientRecord};
use crate::service::scopes::ScopeSet;
use crate::service::{now, Actor};
use crate::tokens::{jwt, opaque};

use super::AppState;

#[derive(Debug, Clone)]
pub struct Principal {
    pub owner: Arc<ClientRecord>,
    /// What this credential grants: the client's scopes for a secret, the
    /// token's scope for a token.
    pub scopes: Arc<ScopeSet>,
}

impl Principal {
    pub fn client_id(&self) -> &str {
        &self.owner.client.client_id
    }

    pub fn can_reach(&self, tenant_path: &str) -> bool {
        tenant_path.starts_with(&self.owner.tenant_path)
    }

    pub fn actor(&self, ip: Option<IpAddr>) -> Actor {
        Actor {
            name: self.owner.client.client_id.clone(),
            tenant_id: self.owner.client.tenant_id.clone(),
            tenant_path: self.owner.tenant_path.clone(),
            scopes: (*self.scopes).clone(),
            ip: ip.map(|ip| ip.to_string()),
        }
    }
}

/// An active token and what stands behind it.
pub enum TokenLookup {
    Access(Arc<jwt::AccessClaims>, Arc<ClientEntry>),
    Api(Arc<ApiTokenRecord>),
}

impl TokenLookup {
    pub fn owner(&self) -> &Arc<ClientRecord> {
        match self {
            TokenLookup::Access(_, entry) => &entry.record,
            TokenLookup::Api(record) => &record.owner,
        }
    }
}

/// Finds an active token of this server: a JWT whose signature, expiry,
/// client and jti all check out, or a live API token. None for anything else.
pub async fn active_token(
    state: &AppState,
    token: &str,
) -> Result<Option<TokenLookup>, OAuthError> {
    if token.starts_with(opaque::API_TOKEN_PREFIX) {
        let found = state.directory.api_token(&state.db, token).await?;
        return Ok(found.filter(|r| r.is_active(now())).map(TokenLookup::Api));
    }
    let Some(claims) = state.directory.verify_jwt(token, &state.issuer) else {
        return Ok(None);
    };
    let Some(entry) = state.directory.client(&state.db, &claims.client_id).await? else {
        return Ok(None);
    };
    if !is_usable(&entry.record.client, now())
        || state.directory.jti_revoked(&state.db, &claims.jti).await?
    {
        return Ok(None);
    }
    Ok(Some(TokenLookup::Access(claims, entry)))
}

/// The client behind a presented id and secret, if the secret is one of its
/// live ones and the client is usable.
pub async fn client_by_secret(
    state: &AppState,
    client_id: &str,
    secret: &str,
) -> Result<Option<Arc<ClientEntry>>, OAuthError> {
    let Some(entry) = state.directory.client(&state.db, client_id).await? else {
        return Ok(None);
    };
    let now = now();
    let ok = entry.record.client.kind == KIND_CLIENT_CREDENTIALS
        && credentials::secret_matches(&entry.secrets, secret, now)
        && is_usable(&entry.record.client, now);
    Ok(ok.then_some(entry))
}

/// Authenticates the caller of introspection, revocation or the admin API.
pub async fn authenticate(state: &AppState, presented: Presented) -> Result<Principal, OAuthError> {
    match presented {
        Presented::Nothing => Err(OAuthError::invalid_client(
            "client authentication is required",
            false,
        )),
        Presented::ClientSecret {
            client_id,
            secret,
            basic,
        } => match client_by_secret(state, &client_id, &secret).await? {
            Some(entry) => Ok(Principal {
                scopes: entry.scopes.clone(),
                owner: entry.record.clone(),
            }),
            None => Err(OAuthError::invalid_client(
                "client authentication failed",
                basic,
            )),
        },
        Presented::Bearer(token) => match active_token(state, &token).await? {
            Some(TokenLookup::Access(claims, entry)) => Ok(Principal {
                owner: entry.record.clone(),
                scopes: Arc::new(ScopeSet::parse(&claims.scope).unwrap_or_default()),
            }),
            Some(TokenLookup::Api(record)) => Ok(Principal {
                scopes: Arc::new(ScopeSet::parse(&record.token.scope).unwrap_or_default()),
                owner: record.owner.clone(),
            }),
            None => Err(OAuthError::invalid_token(
                "the token is malformed, expired, revoked or unknown",
            )),
        },
    }
}

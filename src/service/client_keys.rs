//! How a client proves itself, as the admin API registers it (API.md
//! section 3, "Clients"): `token_endpoint_auth_method`, `jwks`, `jwks_uri`
//! and `federated_subjects`, and the rules that tie them together.
//! - `private_key_jwt` is for kind `client_credentials`, gets no secret, and
//!   needs `jwks`, `jwks_uri` or at least one federated subject;
//! - `jwks` and `jwks_uri` belong to `private_key_jwt`, and not both;
//! - federated subjects go with any method; each names a trusted issuer of
//!   the client's tenant or one above it.

use std::collections::BTreeSet;

use super::{ServiceError, ServiceResult};
use crate::assertions::key_cache::{KeyCache, KeySource};
use crate::domain::{AuthMethod, ClientKeys, ClientKind, FederatedSubject, FederatedSubjects};
use crate::store::AnyConnection;

/// Federated subjects per client, at most.
pub const MAX_SUBJECTS: usize = 50;

pub fn parse_method(text: Option<&str>) -> ServiceResult<AuthMethod> {
    match text {
        None => Ok(AuthMethod::ClientSecretBasic),
        Some(text) => text.parse::<AuthMethod>().map_err(|_| {
            ServiceError::Invalid(format!(
                "token_endpoint_auth_method {text:?} is not one of client_secret_basic, client_secret_post, private_key_jwt"
            ))
        }),
    }
}

pub fn parse_jwks(value: &serde_json::Value) -> ServiceResult<ClientKeys> {
    crate::assertions::jwks::parse_for_registration(value)
        .map(ClientKeys)
        .map_err(|e| ServiceError::Invalid(format!("jwks: {e}")))
}

/// The URL's shape (absolute http or https, no user info, at most 2000
/// characters). Whether it may be fetched, and what it holds, is checked by
/// `check_jwks_uri` before the change, and again at every fetch.
pub fn parse_jwks_uri(text: &str) -> ServiceResult<String> {
    let text = text.trim();
    crate::assertions::fetch::check_url(text, true)
        .map(|_| text.to_string())
        .map_err(|e| ServiceError::Invalid(format!("jwks_uri: {e}")))
}

/// Fetches a `jwks_uri` being registered, under the fetch rules: a URL
/// that cannot be fetched or holds no usable key is a 400 naming why. The
/// keys are cached for the first assertions.
pub fn check_jwks_uri(keys: &KeyCache, jwks_uri: &str) -> ServiceResult<()> {
    keys.fetcher()
        .check_url(jwks_uri.trim())
        .map_err(|e| ServiceError::Invalid(format!("jwks_uri: {e}")))?;
    keys.fetch_for_registration(&KeySource::JwksUri(jwks_uri.trim().to_string()))
        .map(|_| ())
        .map_err(|e| ServiceError::Invalid(format!("jwks_uri could not be used: {e}")))
}

/// Each subject's issuer must be trusted by the tenant at `tenant_path` or
/// one above it; duplicates go, order is kept sorted.
pub fn parse_subjects(
    conn: &mut AnyConnection,
    tenant_path: &str,
    list: &[FederatedSubject],
) -> ServiceResult<FederatedSubjects> {
    if list.len() > MAX_SUBJECTS {
        return Err(ServiceError::Invalid(format!(
            "federated_subjects: at most {MAX_SUBJECTS}"
        )));
    }
    let mut set = BTreeSet::new();
    for entry in list {
        let issuer = entry.issuer.trim();
        let subject = entry.subject.trim();
        if subject.is_empty() || subject.len() > 1000 || subject.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(format!(
                "federated_subjects: subject {subject:?} must be 1 to 1000 characters, no control characters"
            )));
        }
        if crate::store::trusted_issuers::in_reach_of(conn, issuer, tenant_path)?.is_empty() {
            return Err(ServiceError::Invalid(format!(
                "federated_subjects: {issuer:?} is not a trusted issuer of the client's tenant or a tenant above it"
            )));
        }
        set.insert(FederatedSubject {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
        });
    }
    Ok(FederatedSubjects(set.into_iter().collect()))
}

/// The rules that tie the four together.
pub fn check_combination(
    kind: ClientKind,
    method: AuthMethod,
    jwks: Option<&ClientKeys>,
    jwks_uri: Option<&str>,
    subjects: &FederatedSubjects,
) -> ServiceResult<()> {
    let has_keys = jwks.is_some() || jwks_uri.is_some();
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(ServiceError::Invalid(
            "give jwks or jwks_uri, not both".into(),
        ));
    }
    if kind == ClientKind::ApiToken
        && (method != AuthMethod::ClientSecretBasic || has_keys || !subjects.is_empty())
    {
        return Err(ServiceError::Invalid(
            "an api_token client uses its token: token_endpoint_auth_method, jwks, jwks_uri and federated_subjects are for client_credentials clients".into(),
        ));
    }
    match method {
        AuthMethod::PrivateKeyJwt if !has_keys && subjects.is_empty() => Err(ServiceError::Invalid(
            "private_key_jwt needs jwks, jwks_uri or at least one federated subject".into(),
        )),
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost if has_keys => {
            Err(ServiceError::Invalid(
                "jwks and jwks_uri are for private_key_jwt clients; set token_endpoint_auth_method to private_key_jwt".into(),
            ))
        }
        _ => Ok(()),
    }
}

//! JWT access tokens, RFC 9068 profile: header `typ: at+jwt` and `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use super::keys::{KeyRing, KeySet};
use super::opaque::random_bytes;

/// `aud` is a string for one audience and an array for several (RFC 7519 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Audience {
        if list.len() == 1 {
            Audience::One(list.remove(0))
        } else {
            Audience::Many(list)
        }
    }

    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(one) => vec![one.clone()],
            Audience::Many(many) => many.clone(),
        }
    }

    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub client_id: String,
    pub aud: Audience,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub scope: String,
    pub role: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_group: Option<String>,
}

/// Tokens longer than this are not even parsed.
const MAX_TOKEN_LEN: usize = 8 * 1024;

pub fn new_jti() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("claims could not be serialised: {0}")]
    Claims(#[from] serde_json::Error),
    #[error("signing failed")]
    Signature,
}

/// Signs with the current key: `header.claims.signature`, each base64url
/// (RFC 7515 compact serialisation). Verification uses jsonwebtoken.
pub fn sign(keys: &KeySet, claims: &AccessClaims) -> Result<String, SignError> {
    let key = &keys.signing;
    let claims_json = serde_json::to_vec(claims)?;
    let mut token = String::with_capacity(key.header_b64.len() + claims_json.len() * 4 / 3 + 400);
    token.push_str(&key.header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims_json, &mut token);
    let signature = key
        .signer
        .sign(token.as_bytes())
        .map_err(|_| SignError::Signature)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The claims of a token this server signed and that has not expired, or
/// None for anything else. Revocation and client status are the caller's to
/// check: they live in the store.
pub fn verify(keys: &KeyRing, token: &str, issuer: &str) -> Option<AccessClaims> {
    verify_keyed(keys, token, issuer).map(|(_, claims)| claims)
}

/// `verify`, with the kid of the key that verified the token: a cache of
/// verified tokens must drop them when that key leaves the key set.
pub fn verify_keyed(keys: &KeyRing, token: &str, issuer: &str) -> Option<(String, AccessClaims)> {
    if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|&b| b == b'.').count() != 2 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.typ.as_deref() != Some("at+jwt") {
        return None;
    }
    let key = keys.find(header.kid.as_deref()?)?;
    // The key fixes the algorithm: a token cannot pick its own (alg confusion).
    if header.alg != key.alg.jwt_algorithm() {
        return None;
    }
    let mut validation = Validation::new(key.alg.jwt_algorithm());
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
        .ok()
        .map(|data| (key.kid.clone(), data.claims))
}

//! The rules a client assertion (RFC 7521, RFC 7523 section 3) must meet,
//! as API.md section 2 states them: pure functions of the assertion, the
//! keys and the time, so each rule is unit-tested without a server.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::jwks;
use crate::tokens::jwt::Audience;

/// The assertion type RFC 7523 section 2.2 defines.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: i64 = 60;
/// `exp` at most this far ahead (plus the leeway).
pub const MAX_LIFETIME: i64 = 3600;
/// An assertion without `jti` lives at most this long: without an id it
/// cannot be recorded as used, so only a short life bounds its replay.
pub const MAX_LIFETIME_WITHOUT_JTI: i64 = 300;
/// Assertions longer than this are not parsed.
const MAX_LEN: usize = 16 * 1024;

/// What the header says, before anything is trusted.
#[derive(Debug, Clone)]
pub struct Peeked {
    pub alg: Algorithm,
    /// The header said `Ed25519`, RFC 9864's fully specified name for
    /// EdDSA with Ed25519 (what openid-client 6 sends for an Ed25519 key).
    /// jsonwebtoken does not know the name, so such an assertion is
    /// verified here (`verify_ed25519`).
    pub ed25519_named: bool,
    pub kid: Option<String>,
    pub iss: String,
    pub sub: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The claims of a verified assertion.
#[derive(Debug, Clone, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// Why an assertion was refused: said in `error_description`, and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(why: impl Into<String>) -> Refused {
    Refused(why.into())
}

#[derive(Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

/// Reads the header and the issuer and subject, unverified: they say which
/// keys to verify with. Nothing here is trusted until `verify` passes.
pub fn peek(assertion: &str) -> Result<Peeked, Refused> {
    if assertion.len() > MAX_LEN || assertion.bytes().filter(|&b| b == b'.').count() != 2 {
        return Err(refused("the client assertion is not a signed JWT"));
    }
    let malformed =
        || refused("the client assertion's header is malformed or names an unsupported alg");
    let raw: RawHeader = URL_SAFE_NO_PAD
        .decode(assertion.split('.').next().unwrap_or_default())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(malformed)?;
    let (alg, ed25519_named) = if raw.alg == "Ed25519" {
        (Algorithm::EdDSA, true)
    } else {
        // An unknown alg ("none", or anything jsonwebtoken does not know)
        // fails here: there is no algorithm to verify it with.
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
        (header.alg, false)
    };
    if !jwks::accepted_algorithm(alg) {
        return Err(refused(format!(
            "the client assertion's alg {alg:?} is not accepted (EdDSA or Ed25519, ES256, ES384, RS256, PS256)"
        )));
    }
    let payload = assertion.split('.').nth(1).unwrap_or_default();
    let claims: Unverified = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| refused("the client assertion's claims are not a JSON object"))?;
    let iss = claims
        .iss
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused("the client assertion has no iss"))?;
    let sub = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused("the client assertion has no sub"))?;
    Ok(Peeked {
        alg,
        ed25519_named,
        kid: raw.kid,
        iss,
        sub,
    })
}

/// Verifies the signature with one of `keys` and applies the claim rules.
/// `audiences` are the values `aud` may contain (the issuer, the token
/// endpoint URL).
pub fn verify(
    assertion: &str,
    peeked: &Peeked,
    keys: &JwkSet,
    audiences: &[&str],
    now: i64,
) -> Result<AssertionClaims, Refused> {
    let candidates = jwks::candidates(keys, peeked.alg, peeked.kid.as_deref());
    if candidates.is_empty() {
        return Err(refused(match &peeked.kid {
            Some(kid) => format!("no registered key has kid {kid:?} for alg {:?}", peeked.alg),
            None => format!("no registered key fits alg {:?}", peeked.alg),
        }));
    }
    let mut validation = Validation::new(peeked.alg);
    // The claim rules are ours, below: jsonwebtoken checks the signature.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = if peeked.ed25519_named {
        candidates
            .iter()
            .find_map(|jwk| verify_ed25519(assertion, jwk))
    } else {
        candidates
            .iter()
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .find_map(|key| {
                jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation).ok()
            })
            .map(|data| data.claims)
    }
    .ok_or_else(|| refused("the client assertion's signature does not verify"))?;
    check_claims(&claims, audiences, now)?;
    Ok(claims)
}

/// An assertion whose header names `Ed25519`: the signature over
/// `header.payload` checked with the key's public `x`, then the claims read.
fn verify_ed25519(assertion: &str, jwk: &jsonwebtoken::jwk::Jwk) -> Option<AssertionClaims> {
    let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
        return None;
    };
    let public = URL_SAFE_NO_PAD.decode(&params.x).ok()?;
    let (signed, signature) = assertion.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(signed.as_bytes(), &signature)
        .ok()?;
    let payload = URL_SAFE_NO_PAD.decode(signed.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The claim rules of API.md section 2.
pub fn check_claims(claims: &AssertionClaims, audiences: &[&str], now: i64) -> Result<(), Refused> {
    if !audiences.iter().any(|a| claims.aud.contains(a)) {
        return Err(refused(format!(
            "the client assertion's aud must contain {}",
            audiences.join(" or ")
        )));
    }
    if claims.exp <= now - LEEWAY {
        return Err(refused("the client assertion has expired"));
    }
    if claims.exp > now + MAX_LIFETIME + LEEWAY {
        return Err(refused(
            "the client assertion's exp is more than 1 hour ahead",
        ));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(refused("the client assertion is not valid yet (nbf)"));
    }
    if claims.iat.is_some_and(|iat| iat > now + LEEWAY) {
        return Err(refused(
            "the client assertion was issued in the future (iat)",
        ));
    }
    match &claims.jti {
        Some(jti) if jti.is_empty() || jti.len() > 256 => Err(refused(
            "the client assertion's jti must be 1 to 256 characters",
        )),
        Some(_) => Ok(()),
        None => {
            let start = claims.iat.or(claims.nbf).unwrap_or(now).min(now);
            if claims.exp - start > MAX_LIFETIME_WITHOUT_JTI {
                Err(refused(
                    "a client assertion without jti may live at most 5 minutes",
                ))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://auth.example";
    const NOW: i64 = 1_800_000_000;

    fn claims(exp: i64, iat: Option<i64>, jti: Option<&str>) -> AssertionClaims {
        AssertionClaims {
            iss: "c".into(),
            sub: "c".into(),
            aud: Audience::One(ISSUER.into()),
            exp,
            nbf: None,
            iat,
            jti: jti.map(Into::into),
        }
    }

    #[test]
    fn exp_is_bounded_on_both_sides_with_the_leeway() {
        let ok = |exp| check_claims(&claims(exp, Some(NOW), Some("j")), &[ISSUER], NOW);
        assert!(ok(NOW + 3600).is_ok(), "one hour, as Authlib makes them");
        assert!(ok(NOW + 3660).is_ok(), "one hour and the leeway");
        assert!(ok(NOW + 3661).is_err());
        assert!(ok(NOW - 59).is_ok(), "within the leeway");
        assert!(ok(NOW - 60).is_err());
    }

    #[test]
    fn nbf_and_iat_may_not_be_in_the_future() {
        let mut c = claims(NOW + 300, Some(NOW + 61), Some("j"));
        assert!(check_claims(&c, &[ISSUER], NOW).is_err());
        c.iat = Some(NOW + 60);
        assert!(check_claims(&c, &[ISSUER], NOW).is_ok());
        c.nbf = Some(NOW + 61);
        assert!(check_claims(&c, &[ISSUER], NOW).is_err());
    }

    #[test]
    fn aud_must_name_this_server() {
        let mut c = claims(NOW + 300, None, Some("j"));
        c.aud = Audience::Many(vec![
            "https://other".into(),
            "https://auth.example/oauth/token".into(),
        ]);
        assert!(check_claims(&c, &[ISSUER, "https://auth.example/oauth/token"], NOW).is_ok());
        assert!(check_claims(&c, &[ISSUER], NOW).is_err());
    }

    #[test]
    fn without_jti_at_most_five_minutes() {
        assert!(check_claims(&claims(NOW + 300, Some(NOW), None), &[ISSUER], NOW).is_ok());
        assert!(check_claims(&claims(NOW + 301, Some(NOW), None), &[ISSUER], NOW).is_err());
        // Without iat the lifetime counts from now.
        assert!(check_claims(&claims(NOW + 301, None, None), &[ISSUER], NOW).is_err());
        assert!(check_claims(&claims(NOW + 3600, Some(NOW), Some("j")), &[ISSUER], NOW).is_ok());
    }

    #[test]
    fn peek_refuses_none_and_hmac() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"iss":"c","sub":"c"}"#);
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"RS512"}"#,
        ] {
            let token = format!("{}.{body}.c2ln", URL_SAFE_NO_PAD.encode(header));
            assert!(peek(&token).is_err(), "{header}");
        }
        let token = format!(
            "{}.{body}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k"}"#)
        );
        let peeked = peek(&token).unwrap();
        assert_eq!(
            (peeked.iss.as_str(), peeked.kid.as_deref()),
            ("c", Some("k"))
        );
        assert!(peek("a.b").is_err());
    }
}

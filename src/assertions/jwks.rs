//! JWK Sets of assertion signers: what may be registered, and which key (and
//! algorithm) verifies a given assertion.
//!
//! Only public keys of the algorithms API.md section 2 names are taken:
//! EdDSA (Ed25519), ES256 (P-256), ES384 (P-384), RS256 and PS256 (RSA of
//! at least 2048 bits). Never `none`, never HMAC: a symmetric key would be a
//! shared secret again, and one the server would have to keep in clear.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The algorithms an assertion may be signed with, as discovery lists them:
/// `Ed25519` is RFC 9864's name for EdDSA with an Ed25519 key.
pub const SIGNING_ALGORITHMS: &[&str] = &["EdDSA", "Ed25519", "ES256", "ES384", "RS256", "PS256"];

/// A JWK whose `alg` is RFC 9864's `Ed25519` is read as `EdDSA`, the name
/// jsonwebtoken knows; both verify the same way.
fn with_known_alg_names(key: &serde_json::Value) -> serde_json::Value {
    let mut key = key.clone();
    if key.get("alg").and_then(|a| a.as_str()) == Some("Ed25519") {
        key["alg"] = serde_json::Value::from("EdDSA");
    }
    key
}

/// The most keys a set may hold (a registration and a fetched document
/// alike): enough for any rotation, few enough to try each.
pub const MAX_KEYS: usize = 20;

/// Smallest RSA modulus taken, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Parses a JWK Set for registration: every key must be usable, so that a
/// mistake shows now rather than at the first assertion. Private keys are
/// refused (the `d` parameter), since storing one would defeat the point.
pub fn parse_for_registration(value: &serde_json::Value) -> Result<JwkSet, String> {
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("a JWK Set is an object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("the JWK Set has no keys".into());
    }
    if keys.len() > MAX_KEYS {
        return Err(format!("the JWK Set has more than {MAX_KEYS} keys"));
    }
    for (i, key) in keys.iter().enumerate() {
        if key.get("d").is_some() || key.get("p").is_some() || key.get("k").is_some() {
            return Err(format!(
                "key {i} is a private or symmetric key: register public keys only"
            ));
        }
    }
    let keys: Vec<serde_json::Value> = keys.iter().map(with_known_alg_names).collect();
    let set: JwkSet = serde_json::from_value(serde_json::json!({ "keys": keys }))
        .map_err(|e| format!("not a JWK Set: {e}"))?;
    for (i, key) in set.keys.iter().enumerate() {
        let name = key
            .common
            .key_id
            .as_deref()
            .map_or_else(|| format!("key {i}"), |kid| format!("key {kid:?}"));
        let algorithms = algorithms_of(key).map_err(|e| format!("{name}: {e}"))?;
        if algorithms.is_empty() {
            return Err(format!("{name}: no algorithm keyward accepts"));
        }
        DecodingKey::from_jwk(key).map_err(|e| format!("{name}: not a usable key ({e})"))?;
    }
    Ok(set)
}

/// Parses a fetched JWK Set: keys keyward cannot use (an encryption key, an
/// HMAC key, an unknown curve) are skipped rather than failing the set,
/// since a published set serves other verifiers too.
pub fn parse_published(body: &[u8]) -> Result<JwkSet, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWK Set (no \"keys\" array)")?;
    let mut usable = Vec::new();
    for key in keys.iter().take(MAX_KEYS * 5) {
        if key.get("d").is_some() || key.get("k").is_some() {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(with_known_alg_names(key)) else {
            continue;
        };
        if matches!(algorithms_of(&jwk), Ok(list) if !list.is_empty())
            && DecodingKey::from_jwk(&jwk).is_ok()
        {
            usable.push(jwk);
        }
        if usable.len() == MAX_KEYS {
            break;
        }
    }
    if usable.is_empty() {
        return Err("the JWK Set has no key keyward can verify with".into());
    }
    Ok(JwkSet { keys: usable })
}

/// The algorithms `key` may verify: its `alg` when it names one (which must
/// be among ours), else every one its type allows.
pub fn algorithms_of(key: &Jwk) -> Result<Vec<Algorithm>, String> {
    if let Some(usage) = &key.common.public_key_use {
        if *usage != jsonwebtoken::jwk::PublicKeyUse::Signature {
            return Ok(Vec::new());
        }
    }
    let by_type: Vec<Algorithm> = match &key.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return Err("only the Ed25519 curve is accepted for OKP keys".into()),
        },
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("only P-256 and P-384 are accepted for EC keys".into()),
        },
        AlgorithmParameters::RSA(p) => {
            let bits = URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .map(|n| n.iter().skip_while(|b| **b == 0).count() * 8)
                .map_err(|_| "the RSA modulus is not base64url")?;
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA keys must have at least {MIN_RSA_BITS} bits"));
            }
            vec![Algorithm::RS256, Algorithm::PS256]
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are not accepted: HMAC is a shared secret".into())
        }
        _ => return Err("the key type is not one of OKP, EC, RSA".into()),
    };
    let Some(named) = key.common.key_algorithm else {
        return Ok(by_type);
    };
    let named = match named {
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        other => {
            return Err(format!(
                "alg {other:?} is not accepted (EdDSA, ES256, ES384, RS256, PS256)"
            ))
        }
    };
    if by_type.contains(&named) {
        Ok(vec![named])
    } else {
        Err(format!("alg {named:?} does not fit the key's type"))
    }
}

/// The keys of `set` that may verify an assertion with header `alg` and
/// `kid`: with a kid, the key of that kid only; without, every key whose
/// type fits the algorithm.
pub fn candidates<'a>(set: &'a JwkSet, alg: Algorithm, kid: Option<&str>) -> Vec<&'a Jwk> {
    set.keys
        .iter()
        .filter(|key| match (kid, key.common.key_id.as_deref()) {
            (Some(wanted), Some(have)) => wanted == have,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .filter(|key| algorithms_of(key).is_ok_and(|list| list.contains(&alg)))
        .collect()
}

/// Whether `alg` is one an assertion may use at all.
pub fn accepted_algorithm(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::EdDSA
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::RS256
            | Algorithm::PS256
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ed25519() -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "a",
               "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
    }

    #[test]
    fn a_public_ed25519_key_registers() {
        let set = parse_for_registration(&json!({"keys": [ed25519()]})).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(
            candidates(&set, Algorithm::EdDSA, Some("a")).len(),
            1,
            "the kid and the algorithm pick the key"
        );
        assert!(candidates(&set, Algorithm::ES256, Some("a")).is_empty());
        assert!(candidates(&set, Algorithm::EdDSA, Some("b")).is_empty());
    }

    #[test]
    fn private_symmetric_and_empty_sets_are_refused() {
        let mut private = ed25519();
        private["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
        for bad in [
            json!({"keys": [private]}),
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            json!({"keys": []}),
            json!({"nokeys": 1}),
            json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}),
        ] {
            assert!(parse_for_registration(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_alg_that_does_not_fit_the_key_is_refused() {
        let mut key = ed25519();
        key["alg"] = json!("ES256");
        assert!(parse_for_registration(&json!({"keys": [key]})).is_err());
        let mut key = ed25519();
        key["alg"] = json!("HS256");
        assert!(parse_for_registration(&json!({"keys": [key]})).is_err());
    }

    #[test]
    fn published_sets_skip_what_keyward_cannot_use() {
        let body = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, ed25519(),
                                   {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]});
        let set = parse_published(body.to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(parse_published(b"{\"keys\": []}").is_err());
        assert!(parse_published(b"<html>").is_err());
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(!accepted_algorithm(alg));
        }
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            assert!(accepted_algorithm(alg));
        }
    }
}

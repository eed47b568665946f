//! How a caller presents itself: client_secret_basic, client_secret_post
//! (RFC 6749 2.3.1), a client assertion (RFC 7521 4.2, RFC 7523 2.2) or a
//! bearer token (RFC 6750 2.1).

use actix_web::http::header::{self, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::form::Form;
use super::OAuthError;

pub enum Presented {
    Nothing,
    ClientSecret {
        client_id: String,
        secret: String,
        basic: bool,
    },
    /// A signed JWT; `client_id` when the request names the client too.
    Assertion {
        assertion: String,
        client_id: Option<String>,
    },
    Bearer(String),
}

/// The bearer token of an `Authorization` header. Besides RFC 6750's
/// `Bearer <token>` it takes `bearer: <token>`, the form Ardexa documents for
/// its renewal endpoint, so scripts written for it work unchanged.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_token(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_token("the Authorization header is not ASCII"))?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(OAuthError::invalid_token(
            "the Authorization header is not a bearer token",
        ));
    };
    let scheme = scheme.trim_end_matches(':');
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(OAuthError::invalid_token(
            "the Authorization header is not a bearer token",
        ));
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(OAuthError::invalid_token("the bearer token is empty"));
    }
    Ok(Some(token.to_string()))
}

/// Basic credentials: base64 of `id:secret`, each form-urlencoded first
/// (RFC 6749 2.3.1).
pub(crate) fn parse_basic(encoded: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_urldecode(id).ok_or_else(bad)?;
    let secret = form_urldecode(secret).ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

fn form_urldecode(value: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={value}")).ok()?;
    match pairs.as_slice() {
        [(_, v)] => Some(v.clone()),
        [] => Some(String::new()),
        _ => None,
    }
}

/// What the request presents. Using two methods at once is `invalid_request`
/// (RFC 6749 2.3: "MUST NOT use more than one authentication method").
pub fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let header_value = values.next();
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        if header_value.is_some() || form_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "a client assertion cannot be used together with another client authentication",
            ));
        }
        let (Some(kind), Some(assertion)) = (assertion_type, assertion) else {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ));
        };
        if kind != crate::assertions::verify::JWT_BEARER {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type must be {}",
                crate::assertions::verify::JWT_BEARER
            )));
        }
        return Ok(Presented::Assertion {
            assertion: assertion.to_string(),
            client_id: form_id.map(str::to_string),
        });
    }
    if let Some(value) = header_value {
        let value = value
            .to_str()
            .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (client_id, secret) = parse_basic(rest)?;
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "client_secret given both in the Authorization header and in the body",
                ));
            }
            if form_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body does not match the Authorization header",
                ));
            }
            return Ok(Presented::ClientSecret {
                client_id,
                secret,
                basic: true,
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "a bearer token and a client_secret cannot be used together",
                ));
            }
            let token = bearer_token(headers)?.unwrap_or_default();
            return Ok(Presented::Bearer(token));
        }
        return Err(OAuthError::invalid_client(
            "unsupported Authorization scheme: use Basic or Bearer",
        ));
    }
    match (form_id, form_secret) {
        (Some(id), Some(secret)) => Ok(Presented::ClientSecret {
            client_id: id.to_string(),
            secret: secret.to_string(),
            basic: false,
        }),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        _ => Ok(Presented::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        let encoded = STANDARD.encode("my%20client:s%3Ae+cret");
        let (id, secret) = parse_basic(&encoded).unwrap();
        assert_eq!(id, "my client");
        assert_eq!(secret, "s:e cret");
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        for bad in [
            "%%%",
            &STANDARD.encode("no-colon"),
            &STANDARD.encode([0xff, 0xfe, b':']),
        ] {
            let err = parse_basic(bad).unwrap_err();
            assert_eq!(err.error, "invalid_client");
        }
    }
}

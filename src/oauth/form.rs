//! `application/x-www-form-urlencoded` request bodies.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt as _;

use super::OAuthError;

/// Form bodies larger than this are refused before parsing.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Reads and parses the body. Wrong content type, oversized or malformed
    /// bodies and repeated parameters (RFC 6749 3.2: "MUST NOT be included
    /// more than once") are `invalid_request`; `repeatable` names the
    /// exceptions (RFC 8707 `resource`, and `audience`).
    pub async fn read(
        req: &HttpRequest,
        mut payload: web::Payload,
        repeatable: &[&str],
    ) -> Result<Form, OAuthError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
            if body.len() + chunk.len() > MAX_FORM_BYTES {
                return Err(OAuthError::invalid_request(format!(
                    "the body is larger than {MAX_FORM_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| OAuthError::invalid_request("the body is not a valid form"))?;
        let form = Form { pairs };
        form.reject_repeats(repeatable)?;
        Ok(form)
    }

    fn reject_repeats(&self, repeatable: &[&str]) -> Result<(), OAuthError> {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.pairs {
            if !seen.insert(name.as_str()) && !repeatable.contains(&name.as_str()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name:?} is given more than once"
                )));
            }
        }
        Ok(())
    }

    /// The value of a parameter given at most once. An empty value counts as
    /// absent (RFC 6749 3.1: "parameters sent without a value MUST be
    /// treated as if they were omitted").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

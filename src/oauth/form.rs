//! `application/x-www-form-urlencoded` request bodies.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt as _;

use super::OAuthError;

/// Form bodies larger than this are refused before parsing.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

/// Parameters whose values are credentials: never in a log line.
const SECRET_PARAMETERS: &[&str] = &["client_secret", "client_assertion", "token", "password"];

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in &self.pairs {
            if SECRET_PARAMETERS.contains(&name.as_str()) {
                list.entry(&(name, "[redacted]"));
            } else {
                list.entry(&(name, value));
            }
        }
        list.finish()
    }
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
        Form::parse(&body, repeatable)
    }

    /// Parses a body already read: a malformed form or a repeated parameter
    /// is `invalid_request`.
    pub fn parse(body: &[u8], repeatable: &[&str]) -> Result<Form, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_parameters_and_keeps_the_rest() {
        let form = Form::parse(
            b"grant_type=client_credentials&client_id=kwc_1&client_secret=kws_SECRET1\
              &client_assertion=eyJ.SECRET2.sig&token=kwt_SECRET3&password=SECRET4",
            &[],
        )
        .unwrap();
        let shown = format!("{form:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("client_credentials") && shown.contains("kwc_1"));
        assert_eq!(shown.matches("[redacted]").count(), 4, "{shown}");
    }
}

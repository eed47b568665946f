//! HTTP requests to a `TestApp` and what they answer.
//!
//! `app.request("GET", path).bearer(token).forwarded_for(ip).send()` builds
//! any request; `app.get`, `app.post_form` and `app.admin` are the common ones.

use std::collections::HashMap;
use std::time::Duration;

use super::TestApp;

pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
    Header(&'a str),
}

/// A request being built; `send*` sends it. Its answer is checked against
/// the OpenAPI document (`schema::check_response`) unless `unchecked()`.
pub struct Request {
    inner: ureq::Request,
    checked: bool,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: &str, path: &str) -> Request {
        // Redirects are answers under test (the console's 303s), not followed.
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .redirects(0)
            .build();
        Request {
            inner: agent.request(method, &self.url(path)),
            checked: true,
        }
    }

    pub fn get(&self, path: &str, auth: Auth) -> TestResponse {
        self.request("GET", path).auth(auth).send()
    }

    pub fn post_form(&self, path: &str, form: &[(&str, &str)], auth: Auth) -> TestResponse {
        self.request("POST", path).auth(auth).send_form(form)
    }

    pub fn post_form_with_headers(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
        auth: Auth,
    ) -> TestResponse {
        let mut request = self.request("POST", path).auth(auth);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send_form(form)
    }

    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        auth: Auth,
    ) -> TestResponse {
        self.request("POST", path)
            .auth(auth)
            .header("Content-Type", content_type)
            .send_bytes(body)
    }

    /// A JSON request to the admin API with a bearer token.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> TestResponse {
        let request = self.request(method, path).bearer(token);
        match body {
            Some(json) => request.send_json(json),
            None => request.send(),
        }
    }
}

impl Request {
    pub fn header(self, name: &str, value: &str) -> Request {
        Request {
            inner: self.inner.set(name, value),
            checked: self.checked,
        }
    }

    /// Not checked against the OpenAPI document: for a test that provokes
    /// an answer on purpose that the document does not promise. (No test
    /// needs it today: every answer the suite provokes is documented.)
    #[allow(dead_code)]
    pub fn unchecked(self) -> Request {
        Request {
            checked: false,
            ..self
        }
    }

    pub fn auth(self, auth: Auth) -> Request {
        match auth {
            Auth::None => self,
            Auth::Basic(id, secret) => self.basic(id, secret),
            Auth::Bearer(token) => self.bearer(token),
            Auth::Header(value) => self.header("Authorization", value),
        }
    }

    /// HTTP Basic as RFC 6749 2.3.1 has it: each part form-encoded first.
    pub fn basic(self, id: &str, secret: &str) -> Request {
        use base64::Engine as _;
        let enc = |s: &str| -> String {
            serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_string()
        };
        let pair = format!("{}:{}", enc(id), enc(secret));
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        self.header("Authorization", &value)
    }

    pub fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// As if from `ip`, through a trusted proxy.
    pub fn forwarded_for(self, ip: &str) -> Request {
        self.header("X-Forwarded-For", ip)
    }

    pub fn send(self) -> TestResponse {
        let (method, url) = (
            self.inner.method().to_string(),
            self.inner.url().to_string(),
        );
        finish(self.checked, self.inner.call(), method, url)
    }

    pub fn send_form(self, form: &[(&str, &str)]) -> TestResponse {
        let (method, url) = (
            self.inner.method().to_string(),
            self.inner.url().to_string(),
        );
        finish(self.checked, self.inner.send_form(form), method, url)
    }

    pub fn send_json(self, json: serde_json::Value) -> TestResponse {
        let (method, url) = (
            self.inner.method().to_string(),
            self.inner.url().to_string(),
        );
        finish(self.checked, self.inner.send_json(json), method, url)
    }

    pub fn send_bytes(self, body: &[u8]) -> TestResponse {
        let (method, url) = (
            self.inner.method().to_string(),
            self.inner.url().to_string(),
        );
        finish(self.checked, self.inner.send_bytes(body), method, url)
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.body, self.status))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Asserts an error in the contract's shape and returns it.
    pub fn assert_error(&self, status: u16, error: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body = self.json();
        assert_eq!(body["error"], error, "body: {}", self.body);
        assert!(body["error_description"].is_string(), "body: {}", self.body);
        body
    }
}

/// The answer, checked against the OpenAPI document when `checked`.
fn finish(
    checked: bool,
    result: Result<ureq::Response, ureq::Error>,
    method: String,
    url: String,
) -> TestResponse {
    let response = into_response(result);
    if checked {
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_default();
        super::schema::check_response(
            &method,
            &path,
            response.status,
            response.header("content-type").unwrap_or(""),
            &response.body,
        );
    }
    response
}

fn into_response(result: Result<ureq::Response, ureq::Error>) -> TestResponse {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let mut headers = HashMap::new();
    for name in response.headers_names() {
        let values: Vec<&str> = response.all(&name);
        headers.insert(name.to_ascii_lowercase(), values.join(", "));
    }
    let body = response.into_string().unwrap_or_default();
    TestResponse {
        status,
        headers,
        body,
    }
}

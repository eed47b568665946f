//! Every error a caller sees: `{"error", "error_description"}`.
//!
//! Policy: a 4xx names what was wrong. A 500 logs the cause chain and answers
//! a fixed text: internal detail never reaches a caller. A lost database is a
//! 503 `temporarily_unavailable`, logged as a warning.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::service::credentials::RenewalError;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub challenge: Option<String>,
    /// Seconds, for `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
            retry_after: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    /// RFC 6749 5.2: 401. Every 401 names a scheme the client can use
    /// (RFC 7235 3.1), here HTTP Basic, whichever method was tried.
    /// A cookie-authenticated change without the session's CSRF token
    /// (API.md section 4, "Sessions"): 403 `invalid_request`.
    pub fn csrf_refused(d: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "invalid_request", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d);
        e.challenge = Some("Basic realm=\"keyward\"".into());
        e
    }

    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }

    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }

    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }

    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }

    /// RFC 6750 3.1.
    pub fn invalid_token(d: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d);
        e.challenge = Some("Bearer realm=\"keyward\", error=\"invalid_token\"".into());
        e
    }

    /// RFC 6750 3.1.
    pub fn insufficient_scope(d: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "insufficient_scope", d);
        e.challenge = Some("Bearer realm=\"keyward\", error=\"insufficient_scope\"".into());
        e
    }

    /// A console sign-in refused: one answer for a wrong email, a wrong
    /// password and a disabled user.
    pub fn sign_in_refused() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "wrong email or password",
        )
    }

    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", d)
    }

    /// 429 with `Retry-After` (RFC 9110 10.2.3): too many failed
    /// authentications from this address (API.md section 2, "Token").
    /// `slow_down` is RFC 8628's error code for "ask less often".
    pub fn slow_down(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            format!(
                "too many failed authentications from this address; retry in {retry_after_secs} s"
            ),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", d)
    }

    pub fn conflict(d: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", d)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed",
        )
    }

    pub fn temporarily_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the store is unreachable; try again shortly",
        )
    }

    /// An assertion's keys could not be fetched and none are cached.
    pub fn keys_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the keys that verify this client assertion could not be fetched; try again shortly",
        )
    }

    /// Logs `cause` and answers a fixed 500.
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        log::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if let Some(challenge) = &self.challenge {
            response.insert_header((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The pool tests every connection after a failure and the
            // listener retries every half second: a second is a fair wait.
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.json(serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        }))
    }
}

impl From<ServiceError> for OAuthError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(d) => OAuthError::invalid_request(d),
            ServiceError::NotFound(what) => OAuthError::not_found(format!("{what} not found")),
            ServiceError::Conflict(d) => OAuthError::conflict(d),
            ServiceError::Forbidden(d) => OAuthError::insufficient_scope(d),
            ServiceError::Unavailable(cause) => {
                log::warn!("store unavailable: {cause}");
                OAuthError::temporarily_unavailable()
            }
            // Retried where it can arise and still there: the caller may
            // try again, as after an outage.
            ServiceError::Contended(cause) => {
                log::warn!("store contention: {cause}");
                OAuthError::temporarily_unavailable()
            }
            ServiceError::Internal(cause) => OAuthError::server_error(&cause),
        }
    }
}

impl From<crate::oauth::throttle::RetryAfter> for OAuthError {
    fn from(wait: crate::oauth::throttle::RetryAfter) -> Self {
        OAuthError::slow_down(wait.seconds())
    }
}

impl From<RenewalError> for OAuthError {
    fn from(e: RenewalError) -> Self {
        match e {
            RenewalError::Inactive => {
                OAuthError::invalid_token("the token is malformed, expired, revoked or unknown")
            }
            RenewalError::Denied(d) => OAuthError::access_denied(d),
            RenewalError::Service(e) => e.into(),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<diesel::result::Error> for OAuthError {
    fn from(e: diesel::result::Error) -> Self {
        ServiceError::from(e).into()
    }
}

impl crate::store::StoreFailure for OAuthError {
    fn is_unavailable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_down_is_a_429_with_retry_after_and_no_store() {
        let response = OAuthError::slow_down(42).error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header(header::RETRY_AFTER), Some("42"));
        assert_eq!(header(header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(header::WWW_AUTHENTICATE), None);
        let body = actix_web::body::to_bytes(response.into_body());
        let body = futures_util::FutureExt::now_or_never(body)
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "slow_down");
        assert!(body["error_description"].is_string());
    }
}

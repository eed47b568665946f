//! Use-cases shared by the HTTP layer and the CLI. Services call `store` and
//! `tokens`; they know nothing about HTTP.
//!
//! Error policy: a service returns `ServiceError`. diesel errors are mapped
//! once, in `From<diesel::result::Error>`: not found is `NotFound`, a unique
//! violation is `Conflict`, a lost or unreachable database is `Unavailable`,
//! a transaction PostgreSQL aborted for a concurrent one is `Contended`,
//! anything else is `Internal` and becomes a 500 whose cause is logged and
//! never shown to the caller.

pub mod audit;
pub mod bootstrap;
pub mod client_keys;
pub mod clients;
pub mod credentials;
pub mod device_groups;
pub mod durations;
pub mod notices;
pub mod passwords;
pub mod patch;
pub mod personal_keys;
pub mod policy;
pub mod renewals;
pub mod retention;
pub mod roles;
pub mod scopes;
pub mod sessions;
pub mod tenants;
pub mod trusted_issuers;
pub mod users;

use crate::store::{StoreError, StoreFailure};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// Bad input; the text names what is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// The caller lacks a scope it needs (or tries to grant one it lacks).
    #[error("{0}")]
    Forbidden(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Aborted by the store to break a deadlock with (or serialise against)
    /// a concurrent transaction: nothing was done, and the same request
    /// again will most likely succeed. The store itself is fine, so the
    /// connection is kept.
    #[error("aborted for a concurrent change: {0}")]
    Contended(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<diesel::result::Error> for ServiceError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            Error::NotFound => ServiceError::NotFound("record"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ServiceError::Conflict("a record with that name or id already exists".into())
            }
            _ if crate::store::is_unavailable(&e) => ServiceError::Unavailable(e.to_string()),
            _ if crate::store::is_contention(&e) => ServiceError::Contended(e.to_string()),
            // PostgreSQL text cannot hold U+0000 (SQLite can). The HTTP layer
            // refuses it in JSON and query strings; this catches the rest
            // (path segments, forms), which is the caller's input, not ours.
            Error::DatabaseError(_, info)
                if info
                    .message()
                    .starts_with("invalid byte sequence for encoding") =>
            {
                ServiceError::Invalid("text must not contain NUL (U+0000)".into())
            }
            _ => ServiceError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => ServiceError::Unavailable(msg),
            StoreError::Query(q) => q.into(),
            StoreError::Migration(msg) => ServiceError::Internal(msg),
        }
    }
}

impl StoreFailure for ServiceError {
    fn is_unavailable(&self) -> bool {
        matches!(self, ServiceError::Unavailable(_))
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// RFC 3339 UTC, seconds precision, `Z` suffix.
pub fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Who is making a change: a client (by one of its credentials) or the CLI.
/// Built only by `oauth::authenticate` (HTTP) and the CLI; every admin action
/// is decided from it by `policy`.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `client_id`, or `cli`.
    pub name: String,
    /// The calling client; None for the CLI, which acts as the root admin.
    pub client_id: Option<String>,
    /// The signed-in user acting through a console session; None for
    /// clients and the CLI.
    pub user_id: Option<String>,
    /// The tenant the credential acts for and its path; everything below it
    /// is in reach. For a token narrowed with `tenant`, that sub-tenant.
    pub tenant_id: String,
    pub tenant_path: String,
    /// What the presented credential holds (a narrowed token: only those).
    pub scopes: scopes::ScopeSet,
    pub ip: Option<String>,
}

impl Actor {
    pub fn can_reach(&self, tenant_path: &str) -> bool {
        tenant_path.starts_with(&self.tenant_path)
    }

    /// Whether the actor is the client `client_id` itself.
    pub fn is_client(&self, client_id: &str) -> bool {
        self.client_id.as_deref() == Some(client_id)
    }

    /// Whether the actor is the user `user_id` itself.
    pub fn is_user(&self, user_id: &str) -> bool {
        self.user_id.as_deref() == Some(user_id)
    }
}

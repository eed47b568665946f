//! Protocol rules: errors (RFC 6749 5.2), form bodies (RFC 6749 3.2 and
//! appendix B) and client authentication (RFC 6749 2.3).

pub mod authenticate;
pub mod client_auth;
pub mod error;
pub mod form;

pub use error::OAuthError;

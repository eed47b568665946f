//! Protocol rules: errors (RFC 6749 5.2), form bodies (RFC 6749 3.2 and
//! appendix B), client authentication (RFC 6749 2.3) and the throttling of
//! failed authentication.

pub mod authenticate;
pub mod client_auth;
pub mod error;
pub mod form;
pub mod throttle;

pub use error::OAuthError;

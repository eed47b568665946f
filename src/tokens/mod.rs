//! What the server hands out: signed JWT access tokens (RFC 9068), opaque
//! API tokens and client secrets, and the keys that sign.

pub mod jwt;
pub mod keys;
pub mod opaque;

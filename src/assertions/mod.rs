//! Client assertions (RFC 7521, RFC 7523): machines that prove who they are
//! with a signed JWT instead of a shared secret. API.md section 2, "Or a
//! signed client assertion", and section 3, "Trusted issuers".
//!
//! - `verify`: the rules an assertion must meet (pure).
//! - `jwks`: which keys may be registered, and which verifies what.
//! - `fetch`: getting key sets from the network, under the SSRF rules.
//! - `key_cache`: remote key sets per node, refreshed and kept as the
//!   contract says.
//!
//! Authentication itself (which client, replay, status, addresses) is the
//! one path every caller goes through: `oauth::authenticate`.

pub mod fetch;
pub mod jwks;
pub mod key_cache;
pub mod verify;

/// Runs blocking network work on a thread of its own and awaits it: the
/// blocking pool is the database's, and a slow issuer must not hold it.
pub async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("keyward-fetch".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

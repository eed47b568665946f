//! keyward: an OAuth 2.0 client-credentials authorization server for machines.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod assertions;
pub mod cli;
pub mod clock;
pub mod config;
pub mod directory;
pub mod domain;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod oauth;
#[cfg(test)]
mod proptests;
pub mod service;
pub mod startup;
pub mod store;
pub mod tokens;

pub use config::Settings;
pub use startup::Application;

/// Makes aws-lc-rs the process's TLS provider. rustls is built with two
/// (aws-lc-rs for SMTP and the signing keys, ring through ureq, which
/// fetches key sets), and then a library that asks rustls for "the" default
/// without naming one panics. Harmless when called again.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

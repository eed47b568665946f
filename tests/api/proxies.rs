//! X-Forwarded-For from a trusted proxy fails closed: a client entry that is
//! not an address makes the caller's address unknown, and an unknown address
//! matches no `allowed_ips`.

use std::io::{Read as _, Write as _};

use base64::Engine as _;

use crate::helpers::spawn_app;

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

/// A token request with raw header bytes (an HTTP client refuses to send
/// bytes that are not ASCII). Returns the status line and the headers.
fn raw_token_request(address: &str, id: &str, secret: &str, forwarded: &[u8]) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let body = "grant_type=client_credentials";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Forwarded-For: ",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(forwarded);
    request.extend_from_slice(b"\r\n\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn an_unreadable_forwarded_address_from_a_trusted_proxy_matches_no_allowlist() {
    let app = spawn_app_with_proxy();
    let (client, secret) = app.new_client("reader", |c| {
        c.allowed_ips = Some(vec!["127.0.0.1/32".into()]);
    });
    let id = client.client_id.as_str();
    // The control: a readable address inside the allowlist passes.
    let ok = app
        .request("POST", "/oauth/token")
        .basic(id, &secret)
        .forwarded_for("127.0.0.1")
        .send_form(&[GRANT]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    for forwarded in [
        "203.0.113.9:1",
        "unknown",
        "[2001:db8::1]",
        "",
        "127.0.0.1, unknown",
        "127.0.0.1,,",
        "not an address",
    ] {
        let response = app
            .request("POST", "/oauth/token")
            .basic(id, &secret)
            .forwarded_for(forwarded)
            .send_form(&[GRANT]);
        response.assert_error(401, "invalid_client");
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{forwarded:?}: {:?}",
            response.headers
        );
    }
    let raw = raw_token_request(&app.address, id, &secret, "203.0.113.9\u{e9}".as_bytes());
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("www-authenticate: basic"),
        "{raw}"
    );
    assert!(raw.contains("invalid_client"), "{raw}");
}

fn spawn_app_with_proxy() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
}

#[test]
fn without_trusted_proxies_forwarded_for_is_ignored() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| {
        c.allowed_ips = Some(vec!["127.0.0.1/32".into()]);
    });
    let response = app
        .request("POST", "/oauth/token")
        .basic(&client.client_id, &secret)
        .forwarded_for("unknown")
        .send_form(&[GRANT]);
    assert_eq!(response.status, 200, "{}", response.body);
}

//! `KeyServer`: a workload's issuer on loopback, serving a JWK Set and the
//! discovery document that names it, for the tests that register a
//! `jwks_uri` or a trusted issuer (the server and the CLI fetch keys first;
//! loopback needs `KEYWARD_ALLOW_INSECURE_JWKS`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A public Ed25519 key, as a JWK Set holds it.
pub fn ed25519_jwks(kid: &str) -> serde_json::Value {
    serde_json::json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": kid,
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }]})
}

/// Answers `GET /jwks.json` with the set, `GET
/// /.well-known/openid-configuration` with a document whose issuer is the
/// server's own address, and anything else with 404; until dropped.
pub struct KeyServer {
    /// `http://127.0.0.1:<port>`: the issuer its discovery document names.
    pub issuer: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyServer {
    pub fn start(jwks: serde_json::Value) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (served_issuer, stopped) = (issuer.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    answer(stream, &served_issuer, &jwks);
                }
            }
        });
        KeyServer {
            issuer,
            stop,
            thread: Some(thread),
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.issuer)
    }
}

fn answer(stream: TcpStream, issuer: &str, jwks: &serde_json::Value) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The headers, up to the blank line; a GET has no body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/jwks.json" => ("200 OK", jwks.to_string()),
        "/.well-known/openid-configuration" => (
            "200 OK",
            serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")})
                .to_string(),
        ),
        _ => ("404 Not Found", "{}".to_string()),
    };
    let _ = (&stream).write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = TcpStream::connect(self.issuer.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

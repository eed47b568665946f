//! What machines without secrets present: `Signer`, a key pair of any
//! algorithm a client assertion may use, and `TestIssuer`, an OpenID
//! issuer (discovery document and JWK Set) served over HTTP on loopback,
//! which a test can change, take down and bring back, and which counts the
//! fetches it answers. Servers that fetch from it run with
//! `allow_insecure_jwks` (http, loopback).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK.
pub struct Signer {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
    /// An Ed25519 signer's PKCS#8 key, to sign under RFC 9864's `Ed25519`
    /// alg name (which jsonwebtoken cannot write).
    ed25519_pkcs8: Option<Vec<u8>>,
}

impl Signer {
    pub fn new(alg: Algorithm, kid: &str) -> Signer {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let mut ed25519_pkcs8 = None;
        let (encoding, public) = match alg {
            Algorithm::EdDSA => {
                let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair =
                    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref())
                        .unwrap();
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
                ed25519_pkcs8 = Some(pkcs8.as_ref().to_vec());
                (
                    EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
                    json!({"kty": "OKP", "crv": "Ed25519",
                           "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
                )
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let (signing, crv, size) = if alg == Algorithm::ES256 {
                    (
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        "P-256",
                        32,
                    )
                } else {
                    (
                        &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                        "P-384",
                        48,
                    )
                };
                let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng)
                    .unwrap();
                // Uncompressed point: 0x04, x, y.
                let point = pair.public_key().as_ref();
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
                (
                    EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                    json!({"kty": "EC", "crv": crv,
                           "x": URL_SAFE_NO_PAD.encode(&point[1..1 + size]),
                           "y": URL_SAFE_NO_PAD.encode(&point[1 + size..])}),
                )
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                use aws_lc_rs::encoding::AsDer;
                use aws_lc_rs::signature::KeyPair as _;
                let pair =
                    aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                let der = pair.as_der().unwrap();
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
                let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
                let _ = pair.public_key();
                let public = serde_json::to_value(&jwk).unwrap();
                (
                    encoding,
                    json!({"kty": "RSA", "n": public["n"], "e": public["e"]}),
                )
            }
            other => panic!("no test signer for {other:?}"),
        };
        let mut jwk = public;
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Signer {
            alg,
            kid: kid.to_string(),
            encoding,
            jwk,
            ed25519_pkcs8,
        }
    }

    /// Signs `claims` with this key, its kid in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signs with the header as given (a wrong kid, no kid).
    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signs with `{"alg": "Ed25519", "kid": ...}` (RFC 9864), as
    /// openid-client 6 does for an Ed25519 key.
    pub fn sign_as_ed25519(&self, claims: &Value) -> String {
        let pkcs8 = self.ed25519_pkcs8.as_ref().expect("an Ed25519 signer");
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).unwrap();
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "Ed25519", "kid": self.kid}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = pair.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    pub fn jwks(signers: &[&Signer]) -> Value {
        json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()})
    }
}

/// A JWT with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

struct IssuerState {
    jwks: Value,
}

/// An issuer on loopback: `/.well-known/openid-configuration` names
/// `<url>/jwks`; `/big` is 70 KiB; `/elsewhere` redirects to another host
/// name; `/slow` answers after 7 s; `/html` is not JSON.
pub struct TestIssuer {
    pub url: String,
    state: Arc<Mutex<IssuerState>>,
    up: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestIssuer {
    pub fn serving(signers: &[&Signer]) -> TestIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(IssuerState {
            jwks: Signer::jwks(signers),
        }));
        let up = Arc::new(AtomicBool::new(true));
        let fetches = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, u, f, st, base) = (
            state.clone(),
            up.clone(),
            fetches.clone(),
            stop.clone(),
            url.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let (s, u, f, base) = (s.clone(), u.clone(), f.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    // The rest of the request head.
                    loop {
                        let mut header = String::new();
                        match reader.read_line(&mut header) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if header == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    if !u.load(Ordering::Acquire) {
                        // Down: the connection drops without an answer.
                        return;
                    }
                    let (status, extra, body) = match path.as_str() {
                        "/.well-known/openid-configuration" => (
                            "200 OK",
                            String::new(),
                            json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
                        ),
                        "/jwks" => {
                            f.fetch_add(1, Ordering::AcqRel);
                            ("200 OK", String::new(), s.lock().unwrap().jwks.to_string())
                        }
                        "/big" => (
                            "200 OK",
                            String::new(),
                            format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(70 * 1024)),
                        ),
                        "/elsewhere" => (
                            "302 Found",
                            format!(
                                "Location: {}/jwks\r\n",
                                base.replace("127.0.0.1", "localhost")
                            ),
                            String::new(),
                        ),
                        "/same-host" => (
                            "302 Found",
                            format!("Location: {base}/jwks\r\n"),
                            String::new(),
                        ),
                        "/slow" => {
                            std::thread::sleep(Duration::from_secs(7));
                            ("200 OK", String::new(), s.lock().unwrap().jwks.to_string())
                        }
                        "/html" => ("200 OK", String::new(), "<html>hello</html>".into()),
                        _ => ("404 Not Found", String::new(), String::new()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        TestIssuer {
            url,
            state,
            up,
            fetches,
            stop,
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// Publishes these keys from now on.
    pub fn publish(&self, signers: &[&Signer]) {
        self.state.lock().unwrap().jwks = Signer::jwks(signers);
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// JWK Set fetches answered so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Acquire)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the stop.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

//! Stock `private_key_jwt` clients against keyward (issue 13, "Interop";
//! API.md section 2, "Or a signed client assertion"): Authlib's
//! `PrivateKeyJWT` (Python) and openid-client's `PrivateKeyJwt` (Node.js,
//! v6), unmodified, each run as a subprocess by the scripts in
//! tests/interop/. Each test registers a `private_key_jwt` client through the
//! admin API with the public halves of keys it makes here, hands the
//! library the private key, and checks that the library's token is one
//! keyward's own introspection calls active for that client. Each script
//! also introspects its token with the same client authentication, so every
//! run makes two assertions; each test runs its flow twice, and the store's
//! record of used assertion ids shows that every assertion, across runs,
//! carried a `jti` of its own and had it taken once.
//!
//! They run when `KEYWARD_TEST_INTEROP` is set (`.ci/run` sets it, after
//! installing Authlib in a virtualenv at target/interop-venv and
//! openid-client under target/interop-node), and then fail loudly when
//! either library is missing; without it they say they were skipped.
//! `KEYWARD_INTEROP_PYTHON`, `KEYWARD_INTEROP_NODE` and
//! `KEYWARD_INTEROP_NODE_DIR` point elsewhere.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Auth, TestApp};

/// How long one run of a script may take (start-up included).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn required() -> bool {
    std::env::var_os("KEYWARD_TEST_INTEROP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether to go on; says so when the test is skipped.
fn enabled(test: &str) -> bool {
    if !required() {
        eprintln!(
            "skipping {test}: KEYWARD_TEST_INTEROP is not set (.ci/run sets it after installing Authlib and openid-client)"
        );
    }
    required()
}

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path(default))
}

/// A private key for the library (PKCS#8 PEM) and its public JWK.
struct KeyPair {
    pem: String,
    jwk: Value,
}

fn pkcs8_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key(kid: &str) -> KeyPair {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    KeyPair {
        pem: pkcs8_pem(pair.as_der().unwrap().as_ref()),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        }),
    }
}

fn p256_key(kid: &str) -> KeyPair {
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref(), &rng).unwrap();
    // The uncompressed point: 0x04, then x and y.
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65);
    KeyPair {
        pem: pkcs8_pem(der.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }),
    }
}

fn ed25519_key(kid: &str) -> KeyPair {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    // ring writes PKCS#8 v2 (RFC 5958, the public key inside), which
    // OpenSSL-based readers (Python's cryptography, Node's crypto) refuse;
    // v1 is the fixed prefix (RFC 8410) and the 32-byte seed.
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&der.as_ref()[16..48]);
    let same = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1).unwrap();
    assert_eq!(same.public_key().as_ref(), pair.public_key().as_ref());
    KeyPair {
        pem: pkcs8_pem(&v1),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                    "x": b64(pair.public_key().as_ref())}),
    }
}

/// Registers a `private_key_jwt` client holding `read` (for its token) and
/// `introspect` (so the script can introspect that token with the same
/// client authentication) and the public keys `jwks`; returns its ID.
fn register_client(app: &TestApp, name: &str, keys: &[&KeyPair]) -> String {
    let admin = app.admin_token();
    let role = app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": format!("{name}-role"), "scopes": ["read", "introspect"]})),
    );
    assert_eq!(role.status, 201, "{}", role.body);
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({
            "name": name,
            "role": format!("{name}-role"),
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
        })),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let client = response.json();
    assert_eq!(client["token_endpoint_auth_method"], "private_key_jwt");
    assert!(
        client.get("client_secret").is_none_or(Value::is_null),
        "a private_key_jwt client gets no secret: {client}"
    );
    client["client_id"].as_str().unwrap().to_string()
}

/// The issuer as discovery publishes it: what the libraries start from.
fn issuer(app: &TestApp) -> String {
    let metadata = app
        .get("/.well-known/oauth-authorization-server", Auth::None)
        .json();
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("private_key_jwt")), "{metadata}");
    metadata["issuer"].as_str().unwrap().to_string()
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args`, the private key in the environment, and waits for it
/// (at most `SCRIPT_TIMEOUT`, then it is killed and the test fails).
fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{} cannot be started: {e}", program.display()));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {SCRIPT_TIMEOUT:?}; it printed: {}",
                program.display(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// The token response a script printed: a bearer token that keyward's own
/// introspection (the bootstrap admin's credentials) calls active, for
/// `client_id`, with the scope asked for. Returns the access token.
fn check_response(app: &TestApp, library: &str, client_id: &str, run: &Run) -> String {
    assert!(
        run.success,
        "{library} failed against keyward.\nstderr:\n{}\nstdout:\n{}",
        run.stderr, run.stdout
    );
    let line = run.stdout.lines().last().unwrap_or_default();
    let response: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{library} printed no token response ({e}): {:?}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    // keyward says "Bearer"; openid-client hands it over lower-cased (the
    // value is case-insensitive, RFC 6749 section 7.1).
    assert!(
        response["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{response}"
    );
    assert_eq!(response["scope"], "read", "{response}");
    assert!(
        response["expires_in"].as_i64().unwrap_or(0) > 0,
        "{response}"
    );
    let token = response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {response}"))
        .to_string();
    let info = app.introspect(&token);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], client_id, "{info}");
    assert_eq!(info["sub"], client_id, "{info}");
    assert_eq!(info["scope"], "read", "{info}");
    token
}

/// How many assertion ids of `client_id` the store has taken.
fn jtis_taken(app: &TestApp, client_id: &str) -> i64 {
    use diesel::prelude::*;
    use keyward::store::schema::assertion_jtis;
    assertion_jtis::table
        .filter(assertion_jtis::issuer.eq(client_id))
        .count()
        .get_result(&mut app.conn())
        .unwrap()
}

/// One run of a script: `args` after the common ones, the key in
/// `KEYWARD_INTEROP_PRIVATE_KEY`. Each run makes two assertions (token,
/// then introspection), each with a jti of its own.
struct Flow<'a> {
    app: &'a TestApp,
    library: &'a str,
    program: &'a Path,
    script: PathBuf,
    envs: Vec<(&'a str, String)>,
    issuer: String,
    client_id: String,
}

impl Flow<'_> {
    fn run(&self, key: &KeyPair, extra: &[&str]) -> String {
        let script = self.script.to_str().unwrap();
        let mut args = vec![
            script,
            "--issuer",
            &self.issuer,
            "--client-id",
            &self.client_id,
            "--key",
            "-",
            "--scope",
            "read",
        ];
        args.extend_from_slice(extra);
        let mut envs: Vec<(&str, &str)> = self.envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        envs.push(("KEYWARD_INTEROP_PRIVATE_KEY", &key.pem));
        let before = jtis_taken(self.app, &self.client_id);
        let outcome = run(self.program, &args, &envs);
        eprint!("{}", outcome.stderr);
        let token = check_response(self.app, self.library, &self.client_id, &outcome);
        assert_eq!(
            jtis_taken(self.app, &self.client_id),
            before + 2,
            "{}: the token request and the introspection each carry a new jti, taken once",
            self.library
        );
        token
    }
}

#[test]
fn authlib_private_key_jwt_gets_tokens_unmodified() {
    if !enabled("authlib_private_key_jwt_gets_tokens_unmodified") {
        return;
    }
    let python = env_path("KEYWARD_INTEROP_PYTHON", "target/interop-venv/bin/python");
    assert!(
        python.is_file(),
        "KEYWARD_TEST_INTEROP is set but {} is missing (python3 -m venv target/interop-venv && target/interop-venv/bin/pip install authlib requests; or set KEYWARD_INTEROP_PYTHON)",
        python.display()
    );
    let app = spawn_app();
    let rsa = rsa_key("authlib-rsa");
    let ec = p256_key("authlib-ec");
    let ed = ed25519_key("authlib-ed");
    let client_id = register_client(&app, "authlib", &[&rsa, &ec, &ed]);
    let flow = Flow {
        app: &app,
        library: "Authlib",
        program: &python,
        script: repo_path("tests/interop/authlib_private_key_jwt.py"),
        envs: vec![],
        issuer: issuer(&app),
        client_id,
    };
    // Authlib as its documentation shows it: a PEM, its default RS256, no
    // kid (keyward tries the client's keys that fit the alg), aud the token
    // endpoint URL, exp an hour ahead. Twice: the second run's assertions
    // are new ones.
    let first = flow.run(&rsa, &[]);
    let second = flow.run(&rsa, &[]);
    assert_ne!(first, second);
    // ES256 and EdDSA, handed over as joserfc keys as Authlib's
    // documentation has it for keys that are not RSA, with a kid in the
    // header that picks the registered key.
    flow.run(&ec, &["--alg", "ES256", "--kid", "authlib-ec"]);
    flow.run(&ed, &["--alg", "EdDSA", "--kid", "authlib-ed"]);
}

#[test]
fn openid_client_private_key_jwt_gets_tokens_unmodified() {
    if !enabled("openid_client_private_key_jwt_gets_tokens_unmodified") {
        return;
    }
    let node = std::env::var_os("KEYWARD_INTEROP_NODE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let node_dir = env_path("KEYWARD_INTEROP_NODE_DIR", "target/interop-node");
    let version = Command::new(&node).arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!(
            "KEYWARD_TEST_INTEROP is set but {} cannot be run (Node.js 20 or later is needed)",
            node.display()
        ),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "openid-client v6 needs Node.js 20 or later; {} is {version}",
        node.display()
    );
    assert!(
        node_dir.join("node_modules/openid-client/package.json").is_file(),
        "KEYWARD_TEST_INTEROP is set but openid-client is not installed under {} (npm install --prefix {0} openid-client@6; or set KEYWARD_INTEROP_NODE_DIR)",
        node_dir.display()
    );
    let app = spawn_app();
    let ec = p256_key("node-ec");
    let rsa = rsa_key("node-rsa");
    let ed = ed25519_key("node-ed");
    let client_id = register_client(&app, "openid-client", &[&ec, &rsa, &ed]);
    let flow = Flow {
        app: &app,
        library: "openid-client",
        program: &node,
        script: repo_path("tests/interop/openid_client_private_key_jwt.mjs"),
        envs: vec![("KEYWARD_INTEROP_NODE_DIR", node_dir.display().to_string())],
        issuer: issuer(&app),
        client_id,
    };
    // openid-client as its documentation shows it: discovery from the
    // issuer, client.PrivateKeyJwt with a CryptoKey and its kid; aud the
    // issuer, exp a minute ahead. ES256, twice, then PS256 with the RSA key,
    // then the Ed25519 key, which openid-client 6 (oauth4webapi 3) signs
    // under RFC 9864's alg name "Ed25519".
    let first = flow.run(&ec, &["--kid", "node-ec"]);
    let second = flow.run(&ec, &["--kid", "node-ec"]);
    assert_ne!(first, second);
    flow.run(&rsa, &["--alg", "PS256", "--kid", "node-rsa"]);
    flow.run(&ed, &["--kid", "node-ed"]);
}

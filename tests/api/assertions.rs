//! Client assertions (API.md section 2, "Or a signed client assertion";
//! section 3, "Trusted issuers"): private_key_jwt with keys inline or by
//! URL, federation with what real workloads present (a Kubernetes projected
//! service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID),
//! single use, and how keys are fetched, refreshed and kept.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use keyward::clock::{Clock, ManualClock};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, unsigned, Auth, Signer, TestApp, TestIssuer, TestResponse};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn app(clock: &Arc<ManualClock>) -> TestApp {
    let clock = clock.clone();
    spawn_app_with(move |s| {
        s.allow_insecure_jwks = true;
        s.clock = Some(clock);
    })
}

fn jti() -> String {
    keyward::tokens::opaque::random_id("jti_")
}

/// An assertion's claims as a client library makes them: five minutes, a
/// fresh jti, the issuer as audience.
fn claims(iss: &str, sub: &str, aud: &str, now: i64) -> Value {
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 300, "jti": jti()})
}

fn token_by_assertion(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> TestResponse {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    app.post_form("/oauth/token", &form, Auth::None)
}

fn assert_refused(response: &TestResponse, why: &str) {
    let body = response.assert_error(401, "invalid_client");
    assert!(
        response.header("www-authenticate").is_some(),
        "a 401 carries WWW-Authenticate"
    );
    assert!(
        body["error_description"].as_str().unwrap().contains(why),
        "expected {why:?} in {body}"
    );
}

/// Registers a private_key_jwt client through the admin API.
fn register(app: &TestApp, admin: &str, keys: Value) -> String {
    let mut body = json!({"name": "signer", "role": "reader",
                          "token_endpoint_auth_method": "private_key_jwt"});
    for (k, v) in keys.as_object().unwrap() {
        body[k] = v.clone();
    }
    let response = app.admin("POST", "/admin/v1/clients", admin, Some(body));
    assert_eq!(response.status, 201, "{}", response.body);
    let created = response.json();
    assert!(
        created.get("client_secret").is_none_or(Value::is_null),
        "a private_key_jwt client gets no secret: {created}"
    );
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");
    created["client_id"].as_str().unwrap().to_string()
}

fn trust(app: &TestApp, admin: &str, body: Value) -> Value {
    let response = app.admin("POST", "/admin/v1/trusted-issuers", admin, Some(body));
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()
}

#[test]
fn private_key_jwt_gets_tokens_with_every_accepted_algorithm() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let token_endpoint = app.url("/oauth/token");
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
    ] {
        let signer = Signer::new(alg, "k1");
        let id = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
        // aud: the issuer, or the token endpoint's URL.
        for aud in [app.address.as_str(), token_endpoint.as_str()] {
            let assertion = signer.sign(&claims(&id, &id, aud, clock.now()));
            let response = token_by_assertion(&app, &assertion, &[("client_id", &id)]);
            assert_eq!(response.status, 200, "{alg:?} aud {aud}: {}", response.body);
            let token = response.json()["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            let seen = app.introspect(&token);
            assert_eq!(seen["active"], true);
            assert_eq!(seen["client_id"], id.as_str(), "{alg:?}");
        }
    }
}

#[test]
fn a_private_key_jwt_client_has_no_secret() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::ES256, "k1");
    let published = TestIssuer::serving(&[&signer]);
    let id = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
    let response = app.admin(
        "POST",
        &format!("/admin/v1/clients/{id}/secret"),
        &admin,
        None,
    );
    response.assert_error(400, "invalid_request");
    let shown = app
        .admin("GET", &format!("/admin/v1/clients/{id}"), &admin, None)
        .json();
    assert_eq!(shown["jwks"]["keys"][0]["kid"], "k1");
    assert!(shown["jwks"]["keys"][0].get("d").is_none());
    // No secret works, and the client's keys cannot be used as one.
    let response = app.post_form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        Auth::Basic(&id, "kws_anything"),
    );
    response.assert_error(401, "invalid_client");
    // Registration rules: keys needed, not both, not a private key.
    for (body, why) in [
        (
            json!({"name": "n", "role": "reader", "token_endpoint_auth_method": "private_key_jwt"}),
            "needs jwks",
        ),
        (
            json!({"name": "n", "role": "reader", "token_endpoint_auth_method": "private_key_jwt",
                "jwks": Signer::jwks(&[&signer]), "jwks_uri": published.jwks_uri()}),
            "not both",
        ),
        (
            json!({"name": "n", "role": "reader", "jwks": Signer::jwks(&[&signer])}),
            "private_key_jwt",
        ),
        (
            json!({"name": "n", "role": "reader", "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "symmetric",
        ),
        (
            json!({"name": "n", "role": "reader", "token_endpoint_auth_method": "none"}),
            "token_endpoint_auth_method",
        ),
    ] {
        let response = app.admin("POST", "/admin/v1/clients", &admin, Some(body));
        let error = response.assert_error(400, "invalid_request");
        assert!(
            error["error_description"].as_str().unwrap().contains(why),
            "{error}"
        );
    }
}

#[test]
fn assertions_that_break_a_rule_are_refused() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let stranger = Signer::new(Algorithm::EdDSA, "k1");
    let id = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
    let now = clock.now();
    let issuer = app.address.clone();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(&id, &id, &issuer, now);
        change(&mut c);
        c
    };
    let cases: Vec<(String, &str)> = vec![
        (
            signer.sign(&with(&|c| c["aud"] = json!("https://elsewhere"))),
            "aud",
        ),
        (
            signer.sign(&with(&|c| c["exp"] = json!(now + 3661))),
            "1 hour",
        ),
        (
            signer.sign(&with(&|c| c["exp"] = json!(now - 61))),
            "expired",
        ),
        (signer.sign(&with(&|c| c["iat"] = json!(now + 120))), "iat"),
        (signer.sign(&with(&|c| c["nbf"] = json!(now + 120))), "nbf"),
        (
            signer.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
                c["exp"] = json!(now + 301);
            })),
            "5 minutes",
        ),
        (stranger.sign(&with(&|_| {})), "signature"),
        (unsigned(&with(&|_| {})), "alg"),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &with(&|_| {}),
                &jsonwebtoken::EncodingKey::from_secret(b"a shared secret"),
            )
            .unwrap(),
            "alg",
        ),
        (
            signer.sign_with_header(
                Header {
                    kid: Some("other".into()),
                    ..Header::new(Algorithm::EdDSA)
                },
                &with(&|_| {}),
            ),
            "kid",
        ),
    ];
    for (assertion, why) in cases {
        assert_refused(&token_by_assertion(&app, &assertion, &[]), why);
    }
    // A client_id beside the assertion must name the same client.
    let good = signer.sign(&with(&|_| {}));
    assert_refused(
        &token_by_assertion(&app, &good, &[("client_id", &app.admin_id)]),
        "client_id",
    );
    // An assertion beside a secret is two methods at once.
    let response = app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &good),
        ],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    response.assert_error(400, "invalid_request");
    // A client that uses a secret cannot sign in with keys.
    let secret_client = &app.admin_id;
    let other = signer.sign(&claims(secret_client, secret_client, &issuer, now));
    assert_refused(&token_by_assertion(&app, &other, &[]), "private_key_jwt");
    // Without jti, five minutes is allowed; and the good one still works.
    let mut short = with(&|_| {});
    short.as_object_mut().unwrap().remove("jti");
    let response = token_by_assertion(&app, &signer.sign(&short), &[]);
    assert_eq!(response.status, 200, "{}", response.body);
    let response = token_by_assertion(&app, &good, &[]);
    assert_eq!(response.status, 200, "{}", response.body);
}

#[test]
fn a_jti_is_accepted_once_per_issuer() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::ES256, "k1");
    let first = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
    let second = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
    let now = clock.now();
    let mut c = claims(&first, &first, &app.address, now);
    c["jti"] = json!("the-same-id");
    let assertion = signer.sign(&c);
    assert_eq!(token_by_assertion(&app, &assertion, &[]).status, 200);
    assert_refused(&token_by_assertion(&app, &assertion, &[]), "used before");
    // Also at introspection: the id is spent everywhere.
    let response = app.post_form(
        "/oauth/introspect",
        &[
            ("token", "x"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
        Auth::None,
    );
    response.assert_error(401, "invalid_client");
    // Another issuer's (here: client's) ids are its own.
    let mut c = claims(&second, &second, &app.address, now);
    c["jti"] = json!("the-same-id");
    assert_eq!(token_by_assertion(&app, &signer.sign(&c), &[]).status, 200);
}

#[test]
fn introspection_and_revocation_take_client_assertions() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(
            json!({"name": "gateway", "role": "admin", "scopes": ["introspect", "clients:write"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": Signer::jwks(&[&signer])}),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.json()["client_id"].as_str().unwrap().to_string();
    let (_, secret) = app.new_client("reader", |_| {});
    let _ = secret;
    let form = |extra: &[(&'static str, String)]| {
        let assertion = signer.sign(&claims(&id, &id, &app.address, clock.now()));
        let mut form = vec![
            ("client_assertion_type", JWT_BEARER.to_string()),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(extra);
        form
    };
    let send = |path: &str, form: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        app.post_form(path, &pairs, Auth::None)
    };
    let token = app.admin_token();
    let seen = send("/oauth/introspect", form(&[("token", token.clone())]));
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.json()["active"], true);
    let revoked = send("/oauth/revoke", form(&[("token", token.clone())]));
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let seen = send("/oauth/introspect", form(&[("token", token)]));
    assert_eq!(seen.json()["active"], false, "revoked at once");
}

#[test]
fn keys_by_jwks_uri_are_fetched_refreshed_on_a_new_kid_and_kept_through_an_outage() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let first = Signer::new(Algorithm::ES256, "2026-1");
    let issuer = TestIssuer::serving(&[&first]);
    let id = register(&app, &admin, json!({"jwks_uri": issuer.jwks_uri()}));
    assert_eq!(issuer.fetches(), 1, "fetched once at registration");
    let get = |signer: &Signer| {
        token_by_assertion(
            &app,
            &signer.sign(&claims(&id, &id, &app.address, clock.now())),
            &[],
        )
    };
    assert_eq!(get(&first).status, 200);
    assert_eq!(issuer.fetches(), 1, "served from the cache");

    // The client rotates: a new kid is fetched at once (the registration
    // fetch does not count toward the once-a-minute limit).
    let second = Signer::new(Algorithm::ES256, "2026-2");
    issuer.publish(&[&first, &second]);
    assert_eq!(get(&second).status, 200);
    assert_eq!(issuer.fetches(), 2);
    // An unknown kid right after: no second refetch within the minute.
    let unknown = Signer::new(Algorithm::ES256, "made-up");
    assert_refused(&get(&unknown), "kid");
    assert_refused(&get(&unknown), "kid");
    assert_eq!(issuer.fetches(), 2, "at most one refetch a minute");
    clock.advance(Duration::from_secs(61));
    assert_refused(&get(&unknown), "kid");
    assert_eq!(issuer.fetches(), 3, "a minute later it may look again");

    // The host goes down: the cached keys stay in use past freshness...
    issuer.set_up(false);
    clock.advance(Duration::from_secs(400));
    assert_eq!(get(&second).status, 200, "kept through a failed refetch");
    // ...until they expire from the cache: then 503, not a 401 that blames
    // a valid assertion.
    clock.advance(Duration::from_secs(3600));
    get(&second).assert_error(503, "temporarily_unavailable");
    // Back up: within a minute the keys are fetched again.
    issuer.set_up(true);
    clock.advance(Duration::from_secs(61));
    assert_eq!(get(&second).status, 200);
}

#[test]
fn a_jwks_uri_that_cannot_be_used_is_refused_at_registration() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let issuer = TestIssuer::serving(&[&signer]);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks", listener.local_addr().unwrap())
    };
    for (uri, why) in [
        (format!("{}/big", issuer.url), "64 KiB"),
        (format!("{}/html", issuer.url), "JSON"),
        (format!("{}/nothing", issuer.url), "404"),
        (format!("{}/elsewhere", issuer.url), "another host"),
        (dead, "connection"),
        ("ftp://keys.example/jwks".to_string(), "https"),
    ] {
        let response = app.admin(
            "POST",
            "/admin/v1/clients",
            &admin,
            Some(json!({"name": "n", "role": "reader",
                        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri})),
        );
        let error = response.assert_error(400, "invalid_request");
        assert!(
            error["error_description"].as_str().unwrap().contains(why),
            "{uri}: expected {why:?} in {error}"
        );
    }
    // A redirect within the same host is followed.
    register(
        &app,
        &admin,
        json!({"jwks_uri": format!("{}/same-host", issuer.url)}),
    );
    let count = || {
        let listed = app
            .admin("GET", "/admin/v1/clients?limit=500", &admin, None)
            .json();
        listed["items"].as_array().unwrap().len()
    };
    let before = count();
    // Too slow: the whole fetch has 5 s.
    let started = std::time::Instant::now();
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(
            json!({"name": "n", "role": "reader", "token_endpoint_auth_method": "private_key_jwt",
                    "jwks_uri": format!("{}/slow", issuer.url)}),
        ),
    );
    response.assert_error(400, "invalid_request");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "gave up after 5 s"
    );
    assert_eq!(count(), before, "a refused registration changes nothing");
}

#[test]
fn without_insecure_fetches_private_addresses_and_plain_http_are_refused() {
    let app = spawn_app_with(|_| {});
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let issuer = TestIssuer::serving(&[&signer]);
    for uri in [
        issuer.jwks_uri(),
        "https://127.0.0.1/jwks".into(),
        "https://localhost./jwks".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://[::1]/jwks".into(),
        "https://10.0.0.7/jwks".into(),
    ] {
        let response = app.admin(
            "POST",
            "/admin/v1/clients",
            &admin,
            Some(json!({"name": "n", "role": "reader",
                        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri})),
        );
        response.assert_error(400, "invalid_request");
        let response = app.admin(
            "POST",
            "/admin/v1/trusted-issuers",
            &admin,
            Some(json!({"issuer": issuer.url, "jwks_uri": uri})),
        );
        response.assert_error(400, "invalid_request");
    }
    assert_eq!(issuer.fetches(), 0, "nothing on loopback was fetched");
}

/// A Kubernetes projected service-account token's claims.
fn kubernetes_claims(iss: &str, aud: &str, namespace: &str, account: &str, now: i64) -> Value {
    json!({
        "iss": iss,
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
        "aud": [aud],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "jti": jti(),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-1", "uid": "6f0d1f4e-1c8a-4d36-9a59-0c3b8e8a1f01"},
            "pod": {"name": format!("{account}-7d9c5"), "uid": "0a5b8f5e-2e1b-4b0e-8f43-3c1a7e3f0b12"},
            "serviceaccount": {"name": account, "uid": "c4d2f1e0-7b6a-4e5d-9c8b-1a2b3c4d5e6f"}
        }
    })
}

#[test]
fn a_kubernetes_service_account_token_gets_a_token_for_its_client() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let cluster_key = Signer::new(Algorithm::RS256, "sa-key-1");
    let cluster = TestIssuer::serving(&[&cluster_key]);
    // Keys by discovery: no jwks_uri given.
    let trusted = trust(
        &app,
        &admin,
        json!({"issuer": cluster.url, "description": "prod cluster"}),
    );
    assert!(trusted["jwks_uri"].is_null());
    let sub = "system:serviceaccount:ingest:uploader";
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "uploader", "role": "reader",
                    "federated_subjects": [{"issuer": cluster.url, "subject": sub}]})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let created = response.json();
    let id = created["client_id"].as_str().unwrap().to_string();
    assert!(
        created["client_secret"].is_string(),
        "a secret client may also federate"
    );
    assert_eq!(created["federated_subjects"][0]["subject"], sub);

    let token = cluster_key.sign(&kubernetes_claims(
        &cluster.url,
        &app.address,
        "ingest",
        "uploader",
        clock.now(),
    ));
    let response = token_by_assertion(&app, &token, &[]);
    assert_eq!(response.status, 200, "{}", response.body);
    let access = response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.introspect(&access)["client_id"], id.as_str());
    // The same token again: its jti is spent.
    assert_refused(&token_by_assertion(&app, &token, &[]), "used before");
    // Another service account of the cluster is nobody here.
    let other = cluster_key.sign(&kubernetes_claims(
        &cluster.url,
        &app.address,
        "ingest",
        "intruder",
        clock.now(),
    ));
    assert_refused(&token_by_assertion(&app, &other, &[]), "no client");
    // A token for another audience (the cluster's API server) is not for us.
    let mut api_server = kubernetes_claims(
        &cluster.url,
        "https://kubernetes.default.svc",
        "ingest",
        "uploader",
        clock.now(),
    );
    api_server["aud"] = json!(["https://kubernetes.default.svc"]);
    assert_refused(
        &token_by_assertion(&app, &cluster_key.sign(&api_server), &[]),
        "aud",
    );
    // Signed by someone else with the cluster's kid.
    let forger = Signer::new(Algorithm::RS256, "sa-key-1");
    let forged = forger.sign(&kubernetes_claims(
        &cluster.url,
        &app.address,
        "ingest",
        "uploader",
        clock.now(),
    ));
    assert_refused(&token_by_assertion(&app, &forged, &[]), "signature");
}

#[test]
fn a_github_actions_token_gets_a_token_for_its_repository_and_branch() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let github_key = Signer::new(Algorithm::RS256, "cc413527-173f-5a05-976e-9c52b1d7b431");
    let github = TestIssuer::serving(&[&github_key]);
    trust(
        &app,
        &admin,
        json!({"issuer": github.url, "jwks_uri": github.jwks_uri()}),
    );
    let main = "repo:plant4/ingest:ref:refs/heads/main";
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "deploy", "role": "reader", "token_endpoint_auth_method": "private_key_jwt",
                    "federated_subjects": [{"issuer": github.url, "subject": main}]})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.json()["client_id"].as_str().unwrap().to_string();
    let actions = |sub: &str, git_ref: &str| {
        let now = clock.now();
        github_key.sign(&json!({
            "jti": jti(), "sub": sub, "aud": app.address, "ref": git_ref,
            "sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37", "repository": "plant4/ingest",
            "repository_owner": "plant4", "run_id": "9876543210", "run_attempt": "1",
            "workflow": "deploy", "event_name": "push", "ref_type": "branch",
            "job_workflow_ref": "plant4/ingest/.github/workflows/deploy.yml@refs/heads/main",
            "runner_environment": "github-hosted",
            "iss": github.url, "nbf": now - 5, "exp": now + 300, "iat": now
        }))
    };
    let response = token_by_assertion(&app, &actions(main, "refs/heads/main"), &[]);
    assert_eq!(response.status, 200, "{}", response.body);
    let access = response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.introspect(&access)["client_id"], id.as_str());
    // A feature branch of the same repository is not the main branch.
    let branch = "repo:plant4/ingest:ref:refs/heads/feature";
    assert_refused(
        &token_by_assertion(&app, &actions(branch, "refs/heads/feature"), &[]),
        "no client",
    );
}

#[test]
fn a_spiffe_jwt_svid_without_jti_gets_a_token_within_five_minutes() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let spire_key = Signer::new(Algorithm::ES256, "spire-2026");
    let spire = TestIssuer::serving(&[&spire_key]);
    // A SPIFFE trust domain is not a URL: its keys need a jwks_uri (SPIRE's
    // OIDC discovery provider, or the bundle endpoint's JWK Set).
    trust(
        &app,
        &admin,
        json!({"issuer": "spiffe://plant4.example", "jwks_uri": spire.jwks_uri()}),
    );
    let response = app.admin(
        "POST",
        "/admin/v1/trusted-issuers",
        &admin,
        Some(json!({"issuer": "spiffe://other.example"})),
    );
    response.assert_error(400, "invalid_request");
    let svid = "spiffe://plant4.example/ns/ingest/sa/uploader";
    let (client, _) = app.new_client("reader", |c| {
        c.token_endpoint_auth_method = Some("private_key_jwt".into());
        c.federated_subjects = Some(vec![keyward::domain::FederatedSubject {
            issuer: "spiffe://plant4.example".into(),
            subject: svid.into(),
        }]);
    });
    let now = clock.now();
    // JWT-SVIDs carry no jti; SPIRE's default lifetime is 5 minutes.
    let jwt_svid = |exp: i64| {
        spire_key.sign(&json!({"iss": "spiffe://plant4.example", "sub": svid,
                               "aud": [app.address], "exp": exp, "iat": now}))
    };
    let response = token_by_assertion(&app, &jwt_svid(now + 300), &[]);
    assert_eq!(response.status, 200, "{}", response.body);
    let access = response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.introspect(&access)["client_id"],
        client.client_id.as_str()
    );
    assert_refused(
        &token_by_assertion(&app, &jwt_svid(now + 600), &[]),
        "5 minutes",
    );
}

#[test]
fn one_subject_on_several_clients_needs_the_client_named() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let key = Signer::new(Algorithm::EdDSA, "k");
    let issuer = TestIssuer::serving(&[&key]);
    trust(&app, &admin, json!({"issuer": issuer.url}));
    let sub = "system:serviceaccount:ops:backup";
    let subjects = vec![keyward::domain::FederatedSubject {
        issuer: issuer.url.clone(),
        subject: sub.into(),
    }];
    let (a, _) = app.new_client("reader", |c| c.federated_subjects = Some(subjects.clone()));
    let (b, _) = app.new_client("reader", |c| c.federated_subjects = Some(subjects.clone()));
    let assertion = || key.sign(&claims(&issuer.url, sub, &app.address, clock.now()));
    assert_refused(&token_by_assertion(&app, &assertion(), &[]), "client_id");
    for client in [&a, &b] {
        let response = token_by_assertion(&app, &assertion(), &[("client_id", &client.client_id)]);
        assert_eq!(response.status, 200, "{}", response.body);
        let access = response.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            app.introspect(&access)["client_id"],
            client.client_id.as_str()
        );
    }
    // A client that does not list the subject cannot be named.
    assert_refused(
        &token_by_assertion(&app, &assertion(), &[("client_id", &app.admin_id)]),
        "no client",
    );
}

#[test]
fn trusted_issuers_belong_to_a_tenant_and_its_subtree() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let key = Signer::new(Algorithm::EdDSA, "k");
    let issuer = TestIssuer::serving(&[&key]);
    let north = app.create_tenant("north", None);
    let south = app.create_tenant("south", None);
    let plant = app.create_tenant("plant", Some(&north));
    let trusted = trust(
        &app,
        &admin,
        json!({"issuer": issuer.url, "tenant_id": north}),
    );
    let id = trusted["id"].as_str().unwrap().to_string();
    // Unique within a tenant; another tenant may trust it too.
    let response = app.admin(
        "POST",
        "/admin/v1/trusted-issuers",
        &admin,
        Some(json!({"issuer": issuer.url, "tenant_id": north})),
    );
    response.assert_error(409, "conflict");
    let subject = json!([{"issuer": issuer.url, "subject": "worker"}]);
    // A client below north may name it; one in south may not.
    let in_plant = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "w", "role": "reader", "tenant_id": plant, "federated_subjects": subject})),
    );
    assert_eq!(in_plant.status, 201, "{}", in_plant.body);
    let in_south = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "w", "role": "reader", "tenant_id": south, "federated_subjects": subject})),
    );
    in_south.assert_error(400, "invalid_request");
    // South's admin does not see north's record.
    let south_admin = app.tenant_admin(&south, None);
    let seen = app
        .admin("GET", "/admin/v1/trusted-issuers", &south_admin, None)
        .json();
    assert_eq!(seen["items"].as_array().unwrap().len(), 0, "{seen}");
    app.admin(
        "GET",
        &format!("/admin/v1/trusted-issuers/{id}"),
        &south_admin,
        None,
    )
    .assert_error(404, "not_found");
    app.admin(
        "DELETE",
        &format!("/admin/v1/trusted-issuers/{id}"),
        &south_admin,
        None,
    )
    .assert_error(404, "not_found");
    // Nor can it make the server fetch on north's behalf: the reach is
    // checked before the keys are.
    let fetched = issuer.fetches();
    app.admin(
        "POST",
        "/admin/v1/trusted-issuers",
        &south_admin,
        Some(json!({"issuer": format!("{}/other", issuer.url),
                    "jwks_uri": issuer.jwks_uri(), "tenant_id": north})),
    )
    .assert_error(404, "not_found");
    assert_eq!(
        issuer.fetches(),
        fetched,
        "nothing fetched for an out-of-reach tenant"
    );
    // A move that would take the client out of the issuer's reach: 409.
    let moved = app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{plant}"),
        &admin,
        Some(json!({"parent_id": south})),
    );
    moved.assert_error(409, "conflict");
    // In use below: 409 until the client lets go.
    app.admin(
        "DELETE",
        &format!("/admin/v1/trusted-issuers/{id}"),
        &admin,
        None,
    )
    .assert_error(409, "conflict");
    let client_id = in_plant.json()["client_id"].as_str().unwrap().to_string();
    let response = app.admin(
        "PATCH",
        &format!("/admin/v1/clients/{client_id}"),
        &admin,
        Some(json!({"federated_subjects": []})),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let response = app.admin(
        "DELETE",
        &format!("/admin/v1/trusted-issuers/{id}"),
        &admin,
        None,
    );
    assert_eq!(response.status, 204, "{}", response.body);
    // Every change is in the audit log.
    let audit = app
        .admin(
            "GET",
            "/admin/v1/audit?action=trusted_issuer.delete",
            &admin,
            None,
        )
        .json();
    assert_eq!(audit["items"][0]["target"], id.as_str(), "{audit}");
    // Keys that cannot be fetched at registration: 400 naming why.
    let response = app.admin(
        "POST",
        "/admin/v1/trusted-issuers",
        &admin,
        Some(json!({"issuer": format!("{}/nowhere", issuer.url)})),
    );
    let error = response.assert_error(400, "invalid_request");
    assert!(
        error["error_description"].as_str().unwrap().contains("404"),
        "{error}"
    );
}

#[test]
fn discovery_lists_private_key_jwt_and_its_algorithms() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let doc = app
        .get("/.well-known/oauth-authorization-server", Auth::None)
        .json();
    for field in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(
            doc[field]
                .as_array()
                .unwrap()
                .contains(&json!("private_key_jwt")),
            "{field}: {doc}"
        );
    }
    let algs = doc["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    for alg in ["EdDSA", "Ed25519", "ES256", "ES384", "RS256", "PS256"] {
        assert!(algs.contains(&json!(alg)), "{alg}");
    }
    assert!(!algs.contains(&json!("none")) && !algs.contains(&json!("HS256")));
}

#[test]
fn used_assertion_ids_are_pruned_once_their_assertions_expired() {
    use diesel::prelude::*;
    use keyward::store::schema::assertion_jtis;
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let id = register(&app, &admin, json!({"jwks": Signer::jwks(&[&signer])}));
    let now = clock.now();
    for lifetime in [60, 300, 3000] {
        let mut c = claims(&id, &id, &app.address, now);
        c["exp"] = json!(now + lifetime);
        assert_eq!(token_by_assertion(&app, &signer.sign(&c), &[]).status, 200);
    }
    let count = || -> i64 {
        assertion_jtis::table
            .count()
            .get_result(&mut app.conn())
            .unwrap()
    };
    assert_eq!(count(), 3);
    let prune = |at: i64| {
        app.db
            .run_here(|conn| keyward::service::retention::prune_assertion_ids(conn, at))
            .unwrap()
    };
    // Kept until exp and the leeway have passed.
    assert_eq!(prune(now + 100), 0);
    assert_eq!(prune(now + 400), 2);
    assert_eq!(count(), 1);
    assert_eq!(prune(now + 4000), 1);
    assert_eq!(count(), 0);
}

#[test]
fn the_rfc_9864_name_ed25519_is_taken_for_eddsa() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let signer = Signer::new(Algorithm::EdDSA, "k1");
    let stranger = Signer::new(Algorithm::EdDSA, "k1");
    // A key registered with alg "Ed25519" too.
    let mut jwk = signer.jwk.clone();
    jwk["alg"] = json!("Ed25519");
    let id = register(&app, &admin, json!({"jwks": {"keys": [jwk]}}));
    let response = token_by_assertion(
        &app,
        &signer.sign_as_ed25519(&claims(&id, &id, &app.address, clock.now())),
        &[],
    );
    assert_eq!(response.status, 200, "{}", response.body);
    // The name changes nothing else: a wrong key still fails.
    assert_refused(
        &token_by_assertion(
            &app,
            &stranger.sign_as_ed25519(&claims(&id, &id, &app.address, clock.now())),
            &[],
        ),
        "signature",
    );
    // And the claim rules still hold.
    let mut late = claims(&id, &id, &app.address, clock.now());
    late["exp"] = json!(clock.now() + 7200);
    assert_refused(
        &token_by_assertion(&app, &signer.sign_as_ed25519(&late), &[]),
        "1 hour",
    );
}

#[test]
fn key_and_subject_changes_apply_to_the_next_assertion() {
    let clock = ManualClock::starting_now();
    let app = app(&clock);
    let admin = app.admin_token();
    let old = Signer::new(Algorithm::ES256, "old");
    let new = Signer::new(Algorithm::ES256, "new");
    let id = register(&app, &admin, json!({"jwks": Signer::jwks(&[&old])}));
    let get = |signer: &Signer| {
        token_by_assertion(
            &app,
            &signer.sign(&claims(&id, &id, &app.address, clock.now())),
            &[],
        )
    };
    assert_eq!(get(&old).status, 200);
    let path = format!("/admin/v1/clients/{id}");
    let changed = app.admin(
        "PATCH",
        &path,
        &admin,
        Some(json!({"jwks": Signer::jwks(&[&new])})),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_refused(&get(&old), "kid");
    assert_eq!(get(&new).status, 200);
    // Removing every key source of a private_key_jwt client is refused.
    app.admin("PATCH", &path, &admin, Some(json!({"jwks": null})))
        .assert_error(400, "invalid_request");
    assert_eq!(get(&new).status, 200, "a refused change changes nothing");
    // A federated subject added later works at once; removed, it stops.
    let key = Signer::new(Algorithm::EdDSA, "k");
    let issuer = TestIssuer::serving(&[&key]);
    trust(&app, &admin, json!({"issuer": issuer.url}));
    let workload = || {
        token_by_assertion(
            &app,
            &key.sign(&claims(&issuer.url, "worker-1", &app.address, clock.now())),
            &[],
        )
    };
    assert_refused(&workload(), "no client");
    let subjects = json!({"federated_subjects": [{"issuer": issuer.url, "subject": "worker-1"}]});
    assert_eq!(
        app.admin("PATCH", &path, &admin, Some(subjects)).status,
        200
    );
    assert_eq!(workload().status, 200);
    let none = json!({"federated_subjects": []});
    assert_eq!(app.admin("PATCH", &path, &admin, Some(none)).status, 200);
    assert_refused(&workload(), "no client");
}

use keyward::service::clients::StatusChange;
use keyward::tokens::keys::SigningAlg;

use crate::helpers::{jwt_parts, spawn_app, spawn_app_with, verify_with_jwks, with_alg, Auth};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[test]
fn basic_auth_returns_a_signed_jwt_with_every_contract_claim() {
    let app = spawn_app();
    let (client, secret) = app.new_client("uploader", |c| c.access_token_ttl = Some(600));
    let response = app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic(&client.client_id, &secret),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "upload");
    let token = body["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], app.address);
    assert_eq!(claims["sub"], client.client_id);
    assert_eq!(claims["client_id"], client.client_id);
    assert_eq!(
        claims["aud"], app.address,
        "no audiences configured: the issuer"
    );
    assert_eq!(claims["scope"], "upload");
    assert_eq!(claims["role"], "uploader");
    assert_eq!(claims["tenant"], app.root_tenant);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims.get("device_group").is_none());
    let verified = verify_with_jwks(&app, token);
    assert_eq!(verified["sub"], client.client_id);
}

#[test]
fn client_secret_post_works_like_basic() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let response = app.post_form(
        "/oauth/token",
        &[
            GRANT,
            ("client_id", &client.client_id),
            ("client_secret", &secret),
        ],
        Auth::None,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["scope"], "read");
}

#[test]
fn basic_with_the_same_client_id_in_the_body_is_accepted_and_another_is_invalid_request() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let same = app.post_form(
        "/oauth/token",
        &[GRANT, ("client_id", &client.client_id)],
        Auth::Basic(&client.client_id, &secret),
    );
    assert_eq!(same.status, 200, "{}", same.body);
    app.post_form(
        "/oauth/token",
        &[GRANT, ("client_id", "kwc_other")],
        Auth::Basic(&client.client_id, &secret),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn a_secret_in_both_header_and_body_is_invalid_request() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    app.post_form(
        "/oauth/token",
        &[GRANT, ("client_secret", &secret)],
        Auth::Basic(&client.client_id, &secret),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn no_client_authentication_is_invalid_client_with_a_basic_challenge() {
    let app = spawn_app();
    let response = app.post_form("/oauth/token", &[GRANT], Auth::None);
    response.assert_error(401, "invalid_client");
    // API.md: every 401 carries WWW-Authenticate, Basic at the token endpoint.
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    // A client_id alone is no authentication either.
    app.post_form(
        "/oauth/token",
        &[GRANT, ("client_id", &app.admin_id)],
        Auth::None,
    )
    .assert_error(401, "invalid_client");
}

#[test]
fn wrong_secret_returns_401_invalid_client_with_www_authenticate_basic() {
    let app = spawn_app();
    let (client, _) = app.new_client("reader", |_| {});
    let response = app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic(&client.client_id, "kws_wrong"),
    );
    response.assert_error(401, "invalid_client");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // By post: the same challenge, naming a scheme the client can use.
    let response = app.post_form(
        "/oauth/token",
        &[
            GRANT,
            ("client_id", &client.client_id),
            ("client_secret", "wrong"),
        ],
        Auth::None,
    );
    response.assert_error(401, "invalid_client");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic("kwc_nobody", "secret"),
    )
    .assert_error(401, "invalid_client");
}

#[test]
fn credentials_are_form_urldecoded_before_base64_as_rfc6749_says() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    // The harness url-encodes; a secret has '-' and '_' which stay as they are,
    // so encode by hand a form-encoded id with a %-escape.
    use base64::Engine as _;
    let encoded_id = client.client_id.replace('_', "%5F");
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{encoded_id}:{secret}"))
    );
    let response = app.post_form("/oauth/token", &[GRANT], Auth::Header(&header));
    assert_eq!(response.status, 200, "{}", response.body);
}

#[test]
fn malformed_basic_headers_are_invalid_client_never_500() {
    let app = spawn_app();
    for header in [
        "Basic !!!notbase64",
        "Basic",
        "Basic bm9jb2xvbg==",
        "Basic //79",
        "Digest abc",
    ] {
        let response = app.post_form("/oauth/token", &[GRANT], Auth::Header(header));
        response.assert_error(401, "invalid_client");
    }
}

#[test]
fn missing_grant_type_or_a_body_that_is_not_a_form_is_invalid_request() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let auth = || Auth::Basic(&client.client_id, &secret);
    app.post_form("/oauth/token", &[("scope", "read")], auth())
        .assert_error(400, "invalid_request");
    app.post_raw(
        "/oauth/token",
        "application/json",
        br#"{"grant_type":"client_credentials"}"#,
        auth(),
    )
    .assert_error(400, "invalid_request");
    app.post_raw(
        "/oauth/token",
        "application/x-www-form-urlencoded",
        br#"{"grant_type":"client_credentials"}"#,
        auth(),
    )
    .assert_error(400, "invalid_request");
    app.post_raw("/oauth/token", "text/plain", b"", auth())
        .assert_error(400, "invalid_request");
}

#[test]
fn unsupported_grant_type_is_reported_as_such() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    app.post_form(
        "/oauth/token",
        &[("grant_type", "password")],
        Auth::Basic(&client.client_id, &secret),
    )
    .assert_error(400, "unsupported_grant_type");
}

#[test]
fn repeated_parameters_and_oversized_bodies_are_invalid_request() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let auth = || Auth::Basic(&client.client_id, &secret);
    app.post_form("/oauth/token", &[GRANT, GRANT], auth())
        .assert_error(400, "invalid_request");
    app.post_form(
        "/oauth/token",
        &[GRANT, ("scope", "read"), ("scope", "read")],
        auth(),
    )
    .assert_error(400, "invalid_request");
    let huge = format!("grant_type=client_credentials&pad={}", "a".repeat(100_000));
    app.post_raw(
        "/oauth/token",
        "application/x-www-form-urlencoded",
        huge.as_bytes(),
        auth(),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn scope_must_be_among_the_clients_scopes_and_defaults_to_all() {
    let app = spawn_app();
    let (client, secret) = app.new_client("admin", |c| {
        c.scopes = Some(vec!["clients:read".into(), "introspect".into()])
    });
    let auth = || Auth::Basic(&client.client_id, &secret);
    let all = app.post_form("/oauth/token", &[GRANT], auth()).json();
    assert_eq!(all["scope"], "clients:read introspect");
    let one = app
        .post_form("/oauth/token", &[GRANT, ("scope", "introspect")], auth())
        .json();
    assert_eq!(one["scope"], "introspect");
    let (_, claims) = jwt_parts(one["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "introspect");
    app.post_form(
        "/oauth/token",
        &[GRANT, ("scope", "introspect clients:write")],
        auth(),
    )
    .assert_error(400, "invalid_scope");
    app.post_form("/oauth/token", &[GRANT, ("scope", "bad\"scope")], auth())
        .assert_error(400, "invalid_scope");
}

#[test]
fn audience_and_resource_must_be_allowed_and_several_make_an_array() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| {
        c.audience = Some(vec![
            "https://a.example.com".into(),
            "https://b.example.com".into(),
        ])
    });
    let auth = || Auth::Basic(&client.client_id, &secret);
    let token = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(
        jwt_parts(&token).1["aud"],
        serde_json::json!(["https://a.example.com", "https://b.example.com"])
    );
    let token = app.token_for(
        &client.client_id,
        &secret,
        &[("audience", "https://b.example.com")],
    );
    assert_eq!(jwt_parts(&token).1["aud"], "https://b.example.com");
    let token = app.token_for(
        &client.client_id,
        &secret,
        &[
            ("resource", "https://a.example.com"),
            ("audience", "https://b.example.com"),
        ],
    );
    assert_eq!(jwt_parts(&token).1["aud"].as_array().unwrap().len(), 2);
    app.post_form(
        "/oauth/token",
        &[GRANT, ("resource", "https://evil.example.com")],
        auth(),
    )
    .assert_error(400, "invalid_target");
    app.post_form(
        "/oauth/token",
        &[GRANT, ("audience", "https://evil.example.com")],
        auth(),
    )
    .assert_error(400, "invalid_target");
}

#[test]
fn tenant_may_name_the_clients_tenant_or_one_below_it() {
    let app = spawn_app();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let other = app.create_tenant("other", None);
    let (client, secret) = app.new_client("reader", |c| c.tenant_id = Some(vendor.clone()));
    let auth = || Auth::Basic(&client.client_id, &secret);
    let token = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(jwt_parts(&token).1["tenant"], vendor);
    let token = app.token_for(&client.client_id, &secret, &[("tenant", &customer)]);
    assert_eq!(jwt_parts(&token).1["tenant"], customer);
    for outside in [
        other.as_str(),
        app.root_tenant.as_str(),
        "tn_does_not_exist",
    ] {
        app.post_form("/oauth/token", &[GRANT, ("tenant", outside)], auth())
            .assert_error(400, "invalid_request");
    }
}

#[test]
fn disabled_revoked_and_expired_clients_are_invalid_client() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let auth = || Auth::Basic(&client.client_id, &secret);
    app.set_status(&client.client_id, StatusChange::Disable);
    app.post_form("/oauth/token", &[GRANT], auth())
        .assert_error(401, "invalid_client");
    app.set_status(&client.client_id, StatusChange::Enable);
    assert_eq!(app.post_form("/oauth/token", &[GRANT], auth()).status, 200);
    app.set_status(&client.client_id, StatusChange::Revoke);
    app.post_form("/oauth/token", &[GRANT], auth())
        .assert_error(401, "invalid_client");

    let (expiring, secret) = app.new_client("reader", |_| {});
    crate::helpers::expire_client(&app, &expiring.client_id);
    app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic(&expiring.client_id, &secret),
    )
    .assert_error(401, "invalid_client");
}

#[test]
fn token_lifetime_never_passes_the_clients_expires_at() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| {
        c.expires_in = Some(keyward::service::durations::DurationSpec::Seconds(120));
        c.access_token_ttl = Some(3600);
    });
    let body = app
        .post_form(
            "/oauth/token",
            &[GRANT],
            Auth::Basic(&client.client_id, &secret),
        )
        .json();
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((115..=120).contains(&expires_in), "expires_in {expires_in}");
}

#[test]
fn allowed_ips_are_checked_with_x_forwarded_for_only_from_trusted_proxies() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (client, secret) = app.new_client("reader", |c| {
        c.allowed_ips = Some(vec!["10.0.0.0/8".into(), "2001:db8::/32".into()])
    });
    let auth = || Auth::Basic(&client.client_id, &secret);
    let inside = app.post_form_with_headers(
        "/oauth/token",
        &[GRANT],
        &[("X-Forwarded-For", "10.1.2.3")],
        auth(),
    );
    assert_eq!(inside.status, 200, "{}", inside.body);
    let inside6 = app.post_form_with_headers(
        "/oauth/token",
        &[GRANT],
        &[("X-Forwarded-For", "2001:db8::7")],
        auth(),
    );
    assert_eq!(inside6.status, 200, "{}", inside6.body);
    app.post_form_with_headers(
        "/oauth/token",
        &[GRANT],
        &[("X-Forwarded-For", "192.0.2.1")],
        auth(),
    )
    .assert_error(401, "invalid_client");
    // The peer itself (127.0.0.1) is not allowed.
    app.post_form("/oauth/token", &[GRANT], auth())
        .assert_error(401, "invalid_client");

    // Without trusted proxies the header is ignored: the peer address counts.
    let untrusting = spawn_app();
    let (client, secret) = untrusting.new_client("reader", |c| {
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()])
    });
    untrusting
        .post_form_with_headers(
            "/oauth/token",
            &[GRANT],
            &[("X-Forwarded-For", "10.1.2.3")],
            Auth::Basic(&client.client_id, &secret),
        )
        .assert_error(401, "invalid_client");
}

#[test]
fn an_api_token_client_at_the_token_endpoint_is_unauthorized_client() {
    let app = spawn_app();
    let (client, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic(&client.client_id, &api_token),
    )
    .assert_error(400, "unauthorized_client");
    app.post_form(
        "/oauth/token",
        &[GRANT],
        Auth::Basic(&client.client_id, "kwt_wrong"),
    )
    .assert_error(401, "invalid_client");
}

#[test]
fn device_group_is_in_every_token_of_a_client_bound_to_one() {
    let app = spawn_app();
    let group = crate::helpers::insert_device_group(&app, &app.root_tenant, "line 4");
    let (client, secret) = app.new_client("uploader", |c| c.device_group_id = Some(group.clone()));
    let token = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(jwt_parts(&token).1["device_group"], group);
    assert_eq!(app.introspect(&token)["device_group"], group);
}

#[test]
fn es256_and_rs256_are_selectable_and_verify_against_the_jwks() {
    for (alg, kty) in [(SigningAlg::ES256, "EC"), (SigningAlg::RS256, "RSA")] {
        let app = spawn_app_with(with_alg(alg));
        let token = app.admin_token();
        let (header, _) = jwt_parts(&token);
        assert_eq!(header["alg"], alg.as_str());
        let jwks = app.get("/.well-known/jwks.json", Auth::None).json();
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
        verify_with_jwks(&app, &token);
        assert_eq!(app.introspect(&token)["active"], true);
    }
}

#[test]
fn a_real_oauth2_client_gets_a_token_that_verifies_offline() {
    use oauth2::basic::BasicClient;
    use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};

    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap());
    let http = |request: oauth2::HttpRequest| -> Result<oauth2::HttpResponse, std::io::Error> {
        let mut call = ureq::request(request.method().as_str(), &request.uri().to_string());
        for (name, value) in request.headers() {
            call = call.set(name.as_str(), value.to_str().unwrap());
        }
        let response = match call.send_bytes(request.body()) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        let mut builder = oauth2::http::Response::builder().status(response.status());
        for name in response.headers_names() {
            builder = builder.header(name.as_str(), response.header(&name).unwrap());
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body)?;
        builder.body(body).map_err(std::io::Error::other)
    };
    let token = oauth
        .exchange_client_credentials()
        .add_scope(Scope::new("read".into()))
        .request(&http)
        .expect("client-credentials exchange succeeds");
    assert_eq!(token.token_type().as_ref(), "bearer");
    let claims = verify_with_jwks(&app, token.access_token().secret());
    assert_eq!(claims["client_id"], client.client_id);
    assert_eq!(claims["scope"], "read");
}

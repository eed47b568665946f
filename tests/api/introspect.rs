use keyward::service::clients::StatusChange;

use crate::helpers::{spawn_app, Auth};

#[test]
fn an_active_access_token_shows_every_field() {
    let app = spawn_app();
    let (client, secret) = app.new_client("uploader", |c| {
        c.audience = Some(vec!["https://api.example.com".into()])
    });
    let token = app.token_for(&client.client_id, &secret, &[]);
    let response = app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["token_kind"], "access_token");
    assert_eq!(body["scope"], "upload");
    assert_eq!(body["client_id"], client.client_id);
    assert_eq!(body["sub"], client.client_id);
    assert_eq!(body["aud"], "https://api.example.com");
    assert_eq!(body["iss"], app.address);
    assert_eq!(body["role"], "uploader");
    assert_eq!(body["tenant"], app.root_tenant);
    for field in ["iat", "exp"] {
        assert!(body[field].is_i64(), "{field}");
    }
    assert!(body["jti"].is_string());
}

#[test]
fn an_active_api_token_is_introspected_as_api_token() {
    let app = spawn_app();
    let (client, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    let body = app.introspect(&api_token);
    assert_eq!(body["active"], true);
    assert_eq!(body["token_kind"], "api_token");
    assert_eq!(body["client_id"], client.client_id);
    assert_eq!(body["scope"], "read");
    assert_eq!(body["role"], "reader");
    assert!(body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap() == 30 * 86_400);
    // The hint is only a hint.
    let hinted = app.post_form(
        "/oauth/introspect",
        &[("token", &api_token), ("token_type_hint", "access_token")],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(hinted.json()["active"], true);
}

#[test]
fn callers_may_use_client_secret_post_or_a_bearer_token() {
    let app = spawn_app();
    let (rs, rs_secret) = app.new_client("resource_server", |_| {});
    let token = app.admin_token();
    let by_post = app.post_form(
        "/oauth/introspect",
        &[
            ("token", &token),
            ("client_id", &rs.client_id),
            ("client_secret", &rs_secret),
        ],
        Auth::None,
    );
    assert_eq!(by_post.json()["active"], true);
    let rs_token = app.token_for(&rs.client_id, &rs_secret, &[]);
    let by_bearer = app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Bearer(&rs_token),
    );
    assert_eq!(by_bearer.json()["active"], true);
    let (api_rs, api_rs_token) =
        app.new_client("resource_server", |c| c.kind = Some("api_token".into()));
    let _ = api_rs;
    let by_api_token = app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Bearer(&api_rs_token),
    );
    assert_eq!(by_api_token.json()["active"], true);
}

#[test]
fn no_or_bad_credentials_are_401_and_a_caller_without_introspect_is_403() {
    let app = spawn_app();
    let token = app.admin_token();
    app.post_form("/oauth/introspect", &[("token", &token)], Auth::None)
        .assert_error(401, "invalid_client");
    app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Basic(&app.admin_id, "kws_wrong"),
    )
    .assert_error(401, "invalid_client");
    app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Bearer("garbage"),
    )
    .assert_error(401, "invalid_token");
    let (reader, secret) = app.new_client("reader", |_| {});
    app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Basic(&reader.client_id, &secret),
    )
    .assert_error(403, "insufficient_scope");
    app.post_form(
        "/oauth/introspect",
        &[],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn anything_not_active_is_exactly_active_false() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let long = "x".repeat(100_000);
    let forged_api = format!("kwt_{}", "A".repeat(49));
    for candidate in [
        tampered.as_str(),
        "garbage",
        "a.b.c",
        long.as_str(),
        forged_api.as_str(),
        "kwt_",
    ] {
        let response = app.post_form_with_headers(
            "/oauth/introspect",
            &[("token", candidate)],
            &[],
            Auth::Basic(&app.admin_id, &app.admin_secret),
        );
        if candidate.len() > 16_000 {
            response.assert_error(400, "invalid_request");
            continue;
        }
        assert_eq!(response.status, 200);
        assert_eq!(
            response.json(),
            serde_json::json!({"active": false}),
            "{candidate:.20}"
        );
    }
}

#[test]
fn disabling_a_client_deactivates_its_tokens_and_enabling_brings_them_back() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    let (api_client, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    app.set_status(&client.client_id, StatusChange::Disable);
    app.set_status(&api_client.client_id, StatusChange::Disable);
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
    assert_eq!(
        app.introspect(&api_token),
        serde_json::json!({"active": false})
    );
    app.set_status(&client.client_id, StatusChange::Enable);
    app.set_status(&api_client.client_id, StatusChange::Enable);
    assert_eq!(app.introspect(&token)["active"], true);
    assert_eq!(app.introspect(&api_token)["active"], true);
    app.set_status(&client.client_id, StatusChange::Revoke);
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
}

#[test]
fn an_expired_client_makes_its_tokens_inactive() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    crate::helpers::expire_client(&app, &client.client_id);
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
}

#[test]
fn a_caller_sees_only_tokens_of_its_tenant_and_below() {
    let app = spawn_app();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let (vendor_rs, vendor_secret) =
        app.new_client("resource_server", |c| c.tenant_id = Some(vendor.clone()));
    let (customer_rs, customer_secret) =
        app.new_client("resource_server", |c| c.tenant_id = Some(customer.clone()));
    let (customer_bot, bot_secret) =
        app.new_client("reader", |c| c.tenant_id = Some(customer.clone()));
    let (vendor_bot, vbot_secret) =
        app.new_client("reader", |c| c.tenant_id = Some(vendor.clone()));
    let customer_token = app.token_for(&customer_bot.client_id, &bot_secret, &[]);
    let vendor_token = app.token_for(&vendor_bot.client_id, &vbot_secret, &[]);
    let ask = |id: &str, secret: &str, token: &str| {
        app.post_form(
            "/oauth/introspect",
            &[("token", token)],
            Auth::Basic(id, secret),
        )
        .json()["active"]
            .clone()
    };
    assert_eq!(
        ask(&vendor_rs.client_id, &vendor_secret, &customer_token),
        true
    );
    assert_eq!(
        ask(&vendor_rs.client_id, &vendor_secret, &vendor_token),
        true
    );
    assert_eq!(
        ask(&customer_rs.client_id, &customer_secret, &customer_token),
        true
    );
    assert_eq!(
        ask(&customer_rs.client_id, &customer_secret, &vendor_token),
        false
    );
    assert_eq!(
        ask(&customer_rs.client_id, &customer_secret, &app.admin_token()),
        false
    );
}

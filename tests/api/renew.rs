use keyward::service::durations::DurationSpec;

use crate::helpers::{jwt_parts, spawn_app, spawn_app_with, Auth};

#[test]
fn renewing_an_access_token_keeps_its_grant_and_the_old_one_stays_valid() {
    let app = spawn_app();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let (client, secret) = app.new_client("admin", |c| {
        c.can_renew = Some(true);
        c.tenant_id = Some(vendor.clone());
        c.scopes = Some(vec!["clients:read".into(), "introspect".into()]);
        c.audience = Some(vec![
            "https://a.example.com".into(),
            "https://b.example.com".into(),
        ]);
        c.access_token_ttl = Some(900);
    });
    let old = app.token_for(
        &client.client_id,
        &secret,
        &[
            ("scope", "introspect"),
            ("audience", "https://b.example.com"),
            ("tenant", &customer),
        ],
    );
    for method in ["GET", "POST"] {
        let response = if method == "GET" {
            app.get("/api/v1/token/renew", Auth::Bearer(&old))
        } else {
            app.post_form("/api/v1/token/renew", &[], Auth::Bearer(&old))
        };
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let body = response.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "introspect");
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
        let new = body["access_token"].as_str().unwrap();
        let (_, old_claims) = jwt_parts(&old);
        let (_, claims) = jwt_parts(new);
        for field in ["scope", "aud", "tenant", "role", "sub", "client_id"] {
            assert_eq!(claims[field], old_claims[field], "{field}");
        }
        assert_ne!(claims["jti"], old_claims["jti"]);
        assert_eq!(app.introspect(new)["active"], true);
        assert_eq!(
            app.introspect(&old)["active"],
            true,
            "the old token stays valid"
        );
    }
}

#[test]
fn renewing_an_api_token_issues_a_new_string_with_a_fresh_lifetime() {
    let app = spawn_app();
    let (client, old) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.token_lifetime = Some(DurationSpec::Named("7d".into()));
    });
    // Ardexa's documented header form.
    let response = app.get(
        "/api/v1/token/renew",
        Auth::Header(&format!("bearer: {old}")),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    let new = body["access_token"].as_str().unwrap();
    assert!(new.starts_with("kwt_"));
    assert_ne!(new, old);
    assert_eq!(body["expires_in"], 7 * 86_400);
    assert_eq!(body["scope"], "read");
    let introspected = app.introspect(new);
    assert_eq!(introspected["token_kind"], "api_token");
    assert_eq!(introspected["client_id"], client.client_id);
    assert_eq!(app.introspect(&old)["active"], true);
}

#[test]
fn renewal_never_runs_past_the_clients_expiry() {
    let app = spawn_app();
    let (_, token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.expires_in = Some(DurationSpec::Named("14d".into()));
        c.token_lifetime = Some(DurationSpec::Named("1y".into()));
    });
    let body = app.get("/api/v1/token/renew", Auth::Bearer(&token)).json();
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(
        expires_in <= 14 * 86_400 && expires_in > 14 * 86_400 - 10,
        "{expires_in}"
    );
}

#[test]
fn renewal_not_allowed_is_403_access_denied() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    app.get("/api/v1/token/renew", Auth::Bearer(&token))
        .assert_error(403, "access_denied");
    let (_, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    app.get("/api/v1/token/renew", Auth::Bearer(&api_token))
        .assert_error(403, "access_denied");
}

#[test]
fn no_bad_or_revoked_tokens_are_401_invalid_token() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let token = app.token_for(&client.client_id, &secret, &[]);
    let response = app.get("/api/v1/token/renew", Auth::None);
    response.assert_error(401, "invalid_token");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    app.get("/api/v1/token/renew", Auth::Bearer("garbage"))
        .assert_error(401, "invalid_token");
    app.get("/api/v1/token/renew", Auth::Header("Basic abc"))
        .assert_error(401, "invalid_token");
    app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&client.client_id, &secret),
    );
    app.get("/api/v1/token/renew", Auth::Bearer(&token))
        .assert_error(401, "invalid_token");
}

#[test]
fn renewals_are_audited_and_checked_against_allowed_ips() {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (client, api_token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    let renew_from = |ip: &str| {
        app.request("GET", "/api/v1/token/renew")
            .bearer(&api_token)
            .forwarded_for(ip)
            .send()
    };
    renew_from("192.0.2.1").assert_error(401, "invalid_token");
    assert_eq!(renew_from("10.9.9.9").status, 200);
    let mut conn = app.conn();
    let renewals: Vec<Option<String>> = audit_events::table
        .filter(audit_events::action.eq("token.renew"))
        .select(audit_events::ip)
        .load(&mut conn)
        .unwrap();
    assert_eq!(renewals, vec![Some("10.9.9.9".to_string())]);
    let _ = client;
}

#[test]
fn renewing_an_access_token_from_an_address_outside_allowed_ips_is_refused() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    let token = app
        .request("POST", "/oauth/token")
        .basic(&client.client_id, &secret)
        .forwarded_for("10.1.1.1")
        .send_form(&[("grant_type", "client_credentials")])
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.request("GET", "/api/v1/token/renew")
        .bearer(&token)
        .forwarded_for("192.0.2.9")
        .send()
        .assert_error(401, "invalid_token");
    assert_eq!(
        app.request("GET", "/api/v1/token/renew")
            .bearer(&token)
            .forwarded_for("10.2.2.2")
            .send()
            .status,
        200
    );
}

/// Renews `token` (its own bearer) and returns the new one; panics unless 200.
pub fn renewed(app: &crate::helpers::TestApp, token: &str) -> String {
    let response = app.get("/api/v1/token/renew", Auth::Bearer(token));
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn revoke(app: &crate::helpers::TestApp, token: &str) {
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", token)],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(response.status, 200, "{}", response.body);
}

/// A renewable client of `kind` and its first token (an access token, or
/// the API token itself).
pub fn renewable(app: &crate::helpers::TestApp, kind: &str) -> String {
    if kind == "api_token" {
        let (_, token) = app.new_client("reader", |c| {
            c.kind = Some("api_token".into());
            c.can_renew = Some(true);
        });
        token
    } else {
        let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
        app.token_for(&client.client_id, &secret, &[])
    }
}

#[test]
fn a_renewal_racing_a_revocation_of_the_same_token_never_leaves_a_live_successor() {
    let app = spawn_app();
    for kind in ["access_token", "api_token"] {
        let mut issued = 0;
        for round in 0..20 {
            let a = renewable(&app, kind);
            let barrier = std::sync::Barrier::new(2);
            let successor = std::thread::scope(|s| {
                let renewal = s.spawn(|| {
                    barrier.wait();
                    app.get("/api/v1/token/renew", Auth::Bearer(&a))
                });
                s.spawn(|| {
                    barrier.wait();
                    revoke(&app, &a);
                });
                renewal.join().unwrap()
            });
            match successor.status {
                200 => {
                    issued += 1;
                    let b = successor.json()["access_token"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(
                        app.introspect(&b)["active"],
                        false,
                        "{kind} round {round}: a successor outlived the revocation"
                    );
                }
                401 => {
                    successor.assert_error(401, "invalid_token");
                }
                other => panic!("{kind} round {round}: {other} {}", successor.body),
            }
            assert_eq!(app.introspect(&a)["active"], false);
        }
        eprintln!("{kind}: {issued} of 20 renewals won the race");
    }
}

#[test]
fn a_renewal_does_not_carry_over_an_audience_removed_from_the_client() {
    let app = spawn_app();
    let actor = app.root_actor();
    let audiences = || {
        Some(vec![
            "https://a.example.com".to_string(),
            "https://b.example.com".to_string(),
        ])
    };
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.audience = audiences();
    });
    let (api_client, api_token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.audience = audiences();
    });
    let narrow = app.token_for(
        &client.client_id,
        &secret,
        &[("audience", "https://a.example.com")],
    );
    let wide = app.token_for(&client.client_id, &secret, &[]);
    for id in [&client.client_id, &api_client.client_id] {
        let change = keyward::service::clients::ClientPatch {
            audience: Some(vec!["https://a.example.com".into()]),
            ..Default::default()
        };
        app.db
            .run_here(|conn| keyward::service::clients::update(conn, &actor, id, change))
            .unwrap();
    }
    app.get("/api/v1/token/renew", Auth::Bearer(&wide))
        .assert_error(403, "access_denied");
    app.get("/api/v1/token/renew", Auth::Bearer(&api_token))
        .assert_error(403, "access_denied");
    // An audience the client still has is carried over.
    let renewed_narrow = renewed(&app, &narrow);
    assert_eq!(jwt_parts(&renewed_narrow).1["aud"], "https://a.example.com");
}

#[test]
fn a_renewal_does_not_carry_over_a_tenant_moved_out_of_the_clients_subtree() {
    let app = spawn_app();
    let actor = app.root_actor();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let elsewhere = app.create_tenant("elsewhere", None);
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.tenant_id = Some(vendor.clone());
    });
    let narrowed = app.token_for(&client.client_id, &secret, &[("tenant", &customer)]);
    let own = app.token_for(&client.client_id, &secret, &[]);
    // Still within: renewed with its tenant.
    let again = renewed(&app, &narrowed);
    assert_eq!(jwt_parts(&again).1["tenant"], customer.as_str());
    let change = keyward::service::tenants::TenantPatch {
        parent_id: Some(elsewhere.clone()),
        ..Default::default()
    };
    app.db
        .run_here(|conn| keyward::service::tenants::update(conn, &actor, &customer, change))
        .unwrap();
    app.get("/api/v1/token/renew", Auth::Bearer(&narrowed))
        .assert_error(403, "access_denied");
    app.get("/api/v1/token/renew", Auth::Bearer(&again))
        .assert_error(403, "access_denied");
    assert_eq!(
        app.get("/api/v1/token/renew", Auth::Bearer(&own)).status,
        200
    );
}

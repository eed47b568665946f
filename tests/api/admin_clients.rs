use serde_json::json;

use keyward::clock::{Clock, ManualClock, SystemClock};

use crate::helpers::{spawn_app, spawn_app_with, Auth};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[test]
fn admin_api_needs_a_bearer_token_with_the_right_scope() {
    let app = spawn_app();
    let response = app.get("/admin/v1/clients", Auth::None);
    response.assert_error(401, "invalid_token");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    app.get("/admin/v1/clients", Auth::Bearer("nonsense"))
        .assert_error(401, "invalid_token");
    app.get(
        "/admin/v1/clients",
        Auth::Basic(&app.admin_id, &app.admin_secret),
    )
    .assert_error(401, "invalid_token");
    let (reader, secret) = app.new_client("reader", |_| {});
    let reader_token = app.token_for(&reader.client_id, &secret, &[]);
    app.admin("GET", "/admin/v1/clients", &reader_token, None)
        .assert_error(403, "insufficient_scope");
    // An API token works as the bearer too.
    let (_, api_admin) = app.new_client("admin", |c| c.kind = Some("api_token".into()));
    assert_eq!(
        app.admin("GET", "/admin/v1/clients", &api_admin, None)
            .status,
        200
    );
    // Scopes are checked per endpoint.
    let read_only = app.tenant_admin(&app.root_tenant, Some(&["clients:read"]));
    assert_eq!(
        app.admin("GET", "/admin/v1/clients", &read_only, None)
            .status,
        200
    );
    app.admin(
        "POST",
        "/admin/v1/clients",
        &read_only,
        Some(json!({"name": "x", "role": "reader"})),
    )
    .assert_error(403, "insufficient_scope");
    app.admin("GET", "/admin/v1/audit", &read_only, None)
        .assert_error(403, "insufficient_scope");
    app.admin("GET", "/admin/v1/tenants", &read_only, None)
        .assert_error(403, "insufficient_scope");
}

#[test]
fn creating_a_client_applies_every_default_and_shows_the_secret_once() {
    let app = spawn_app();
    let token = app.admin_token();
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(json!({"name": "ingest-bot", "role": "uploader"})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let created = response.json();
    assert_eq!(created["kind"], "client_credentials");
    assert_eq!(created["scopes"], json!(["upload"]));
    assert_eq!(created["tenant_id"], app.root_tenant);
    assert_eq!(created["can_renew"], false);
    assert_eq!(created["access_token_ttl"], 3600);
    assert_eq!(created["token_lifetime"], 30 * 86_400);
    assert_eq!(created["status"], "active");
    assert_eq!(created["allowed_ips"], json!([]));
    assert_eq!(created["metadata"], json!({}));
    assert!(
        created["expires_at"].is_null()
            && created["revoked_at"].is_null()
            && created["last_used_at"].is_null()
    );
    for field in [
        "client_id",
        "name",
        "description",
        "device_group_id",
        "owner",
        "owner_email",
        "audience",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(field).is_some(), "{field} missing");
    }
    let secret = created["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("kws_"));
    let id = created["client_id"].as_str().unwrap();
    let shown = app.admin("GET", &format!("/admin/v1/clients/{id}"), &token, None);
    assert!(!shown.body.contains(secret) && shown.json().get("client_secret").is_none());
    let listed = app.admin("GET", "/admin/v1/clients", &token, None);
    assert!(!listed.body.contains(secret));
    assert_eq!(
        app.post_form("/oauth/token", &[GRANT], Auth::Basic(id, secret))
            .status,
        200
    );
}

#[test]
fn every_field_of_the_contract_example_is_stored_and_returned() {
    let app = spawn_app();
    let token = app.admin_token();
    let group = app
        .admin(
            "POST",
            "/admin/v1/device-groups",
            &token,
            Some(json!({"name": "plant 4"})),
        )
        .json();
    let body = json!({"name": "ingest-bot", "kind": "api_token", "role": "uploader",
        "scopes": ["upload"], "tenant_id": app.root_tenant, "device_group_id": group["id"],
        "owner": "Plant 4 team", "owner_email": "ops@example.com",
        "expires_at": null, "expires_in": "3m", "can_renew": true,
        "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"], "access_token_ttl": 600,
        "token_lifetime": "1m", "audience": ["https://api.example.com"],
        "metadata": {"type": "embedded", "allow_unauthenticated": true}});
    let response = app.admin("POST", "/admin/v1/clients", &token, Some(body));
    assert_eq!(response.status, 201, "{}", response.body);
    let c = response.json();
    assert!(c["token"].as_str().unwrap().starts_with("kwt_"));
    assert!(c["token_expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(c.get("client_secret").is_none());
    assert_eq!(c["device_group_id"], group["id"]);
    assert_eq!(c["owner"], "Plant 4 team");
    assert_eq!(c["owner_email"], "ops@example.com");
    assert_eq!(c["can_renew"], true);
    assert_eq!(c["allowed_ips"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(c["access_token_ttl"], 600);
    assert_eq!(c["audience"], json!(["https://api.example.com"]));
    assert_eq!(c["metadata"]["type"], "embedded");
    let expires = chrono::DateTime::parse_from_rfc3339(c["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((expires - keyward::service::now() - 90 * 86_400).abs() < 10);
    // The token's expiry is its lifetime (30 days), inside the client's 90.
    let token_expires =
        chrono::DateTime::parse_from_rfc3339(c["token_expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp();
    assert!((token_expires - keyward::service::now() - 30 * 86_400).abs() < 10);
    // Seconds as a JSON integer.
    let by_seconds = app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(
            json!({"name": "s", "role": "reader", "kind": "api_token", "token_lifetime": 604_800}),
        ),
    );
    assert_eq!(by_seconds.json()["token_lifetime"], 604_800);
}

#[test]
fn bad_client_input_is_400_naming_the_problem_and_changes_nothing() {
    let app = spawn_app();
    let token = app.admin_token();
    let long_name = "n".repeat(201);
    let cases = [
        (
            json!({"name": "x", "role": "reader", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "x", "role": "reader", "can_renew": "yes"}),
            "can_renew",
        ),
        (json!({"name": "", "role": "reader"}), "name"),
        (json!({"name": "   ", "role": "reader"}), "name"),
        (json!({"name": long_name, "role": "reader"}), "name"),
        (json!({"name": "x", "role": "wizard"}), "wizard"),
        (
            json!({"name": "x", "role": "reader", "scopes": ["upload"]}),
            "upload",
        ),
        (
            json!({"name": "x", "role": "reader", "kind": "password"}),
            "kind",
        ),
        (
            json!({"name": "x", "role": "reader", "owner_email": "not-an-email"}),
            "email",
        ),
        (
            json!({"name": "x", "role": "reader", "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips",
        ),
        (
            json!({"name": "x", "role": "reader", "allowed_ips": ["example.com"]}),
            "allowed_ips",
        ),
        (
            json!({"name": "x", "role": "reader", "expires_in": "5w"}),
            "5w",
        ),
        (
            json!({"name": "x", "role": "reader", "token_lifetime": "2y"}),
            "token_lifetime",
        ),
        (
            json!({"name": "x", "role": "reader", "token_lifetime": 3600}),
            "token_lifetime",
        ),
        (
            json!({"name": "x", "role": "reader", "access_token_ttl": 30}),
            "access_token_ttl",
        ),
        (
            json!({"name": "x", "role": "reader", "access_token_ttl": 86_401}),
            "access_token_ttl",
        ),
        (
            json!({"name": "x", "role": "reader", "expires_at": "2001-01-01T00:00:00Z"}),
            "past",
        ),
        (
            json!({"name": "x", "role": "reader", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "role": "reader", "expires_at": "2099-01-01T00:00:00Z", "expires_in": "7d"}),
            "not both",
        ),
        (json!({"role": "reader"}), "name"),
        (json!(["not", "an", "object"]), "JSON"),
    ];
    let before = app
        .admin("GET", "/admin/v1/clients?status=all", &token, None)
        .json()["items"]
        .as_array()
        .unwrap()
        .len();
    for (body, needle) in cases {
        let response = app.admin("POST", "/admin/v1/clients", &token, Some(body.clone()));
        let error = response.assert_error(400, "invalid_request");
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}: {}",
            response.body
        );
    }
    let after = app
        .admin("GET", "/admin/v1/clients?status=all", &token, None)
        .json()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing was created");
    // Another tenant's device group, or one that does not exist: 404.
    app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(json!({"name": "x", "role": "reader", "device_group_id": "dg_nope"})),
    )
    .assert_error(404, "not_found");
    app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(json!({"name": "x", "role": "reader", "tenant_id": "tn_nope"})),
    )
    .assert_error(404, "not_found");
}

#[test]
fn a_caller_cannot_grant_admin_scopes_it_lacks_but_may_grant_resource_scopes() {
    let app = spawn_app();
    let limited = app.tenant_admin(&app.root_tenant, Some(&["clients:write", "clients:read"]));
    app.admin(
        "POST",
        "/admin/v1/clients",
        &limited,
        Some(json!({"name": "x", "role": "admin"})),
    )
    .assert_error(403, "insufficient_scope");
    app.admin(
        "POST",
        "/admin/v1/clients",
        &limited,
        Some(json!({"name": "x", "role": "resource_server"})),
    )
    .assert_error(403, "insufficient_scope");
    // Narrowing the scopes does not hide the role: it still carries every
    // admin scope of `admin`.
    app.admin(
        "POST",
        "/admin/v1/clients",
        &limited,
        Some(json!({"name": "x", "role": "admin", "scopes": ["clients:read"]})),
    )
    .assert_error(403, "insufficient_scope");
    let reader = app.admin(
        "POST",
        "/admin/v1/clients",
        &limited,
        Some(json!({"name": "y", "role": "uploader"})),
    );
    assert_eq!(reader.status, 201);
}

#[test]
fn lists_paginate_with_cursors_in_a_stable_order_and_filter() {
    let app = spawn_app();
    let token = app.admin_token();
    for i in 0..5 {
        app.new_client("reader", |c| c.name = format!("r{i}"));
    }
    let (api, _) = app.new_client("uploader", |c| c.kind = Some("api_token".into()));
    let mut seen = Vec::new();
    let mut url = "/admin/v1/clients?limit=2".to_string();
    loop {
        let page = app.admin("GET", &url, &token, None).json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|c| c["client_id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => url = format!("/admin/v1/clients?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "admin, five readers and one api token");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "stable order");
    let filtered = app
        .admin("GET", "/admin/v1/clients?kind=api_token", &token, None)
        .json();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["items"][0]["client_id"], api.client_id);
    assert_eq!(
        app.admin("GET", "/admin/v1/clients?role=reader", &token, None)
            .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        app.admin(
            "GET",
            &format!("/admin/v1/clients?tenant_id={}", app.root_tenant),
            &token,
            None
        )
        .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    app.admin("GET", "/admin/v1/clients?limit=0", &token, None)
        .assert_error(400, "invalid_request");
    app.admin("GET", "/admin/v1/clients?limit=501", &token, None)
        .assert_error(400, "invalid_request");
    app.admin("GET", "/admin/v1/clients?status=sleepy", &token, None)
        .assert_error(400, "invalid_request");
    app.admin("GET", "/admin/v1/clients?colour=red", &token, None)
        .assert_error(400, "invalid_request");
}

#[test]
fn status_filter_hides_revoked_by_default_and_all_shows_them() {
    let app = spawn_app();
    let token = app.admin_token();
    let (revoked, _) = app.new_client("reader", |_| {});
    let (disabled, _) = app.new_client("reader", |_| {});
    let (expired, _) = app.new_client("reader", |_| {});
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/revoke", revoked.client_id),
        &token,
        None,
    );
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/disable", disabled.client_id),
        &token,
        None,
    );
    crate::helpers::expire_client(&app, &expired.client_id);
    let ids = |query: &str| -> Vec<String> {
        app.admin("GET", &format!("/admin/v1/clients{query}"), &token, None)
            .json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!ids("").contains(&revoked.client_id));
    assert!(ids("").contains(&disabled.client_id));
    assert!(ids("?status=all").contains(&revoked.client_id));
    assert_eq!(ids("?status=revoked"), vec![revoked.client_id.clone()]);
    assert_eq!(ids("?status=disabled"), vec![disabled.client_id.clone()]);
    assert_eq!(ids("?status=expired"), vec![expired.client_id.clone()]);
    assert_eq!(ids("?status=active"), vec![app.admin_id.clone()]);
    let shown = app
        .admin(
            "GET",
            &format!("/admin/v1/clients/{}", expired.client_id),
            &token,
            None,
        )
        .json();
    assert_eq!(shown["status"], "expired");
}

#[test]
fn patch_changes_mutable_fields_and_names_an_immutable_one_in_its_400() {
    let app = spawn_app();
    let token = app.admin_token();
    let (client, secret) = app.new_client("reader", |_| {});
    let path = format!("/admin/v1/clients/{}", client.client_id);
    let response = app.admin("PATCH", &path, &token, Some(json!({
        "name": "renamed", "description": "d", "owner": "team", "owner_email": "a@b.example",
        "can_renew": true, "expires_in": "14d", "allowed_ips": ["192.0.2.0/24"],
        "access_token_ttl": 120, "token_lifetime": "6m", "audience": ["https://x.example"], "metadata": {"k": "v"}})));
    assert_eq!(response.status, 200, "{}", response.body);
    let patched = response.json();
    assert_eq!(patched["name"], "renamed");
    assert_eq!(patched["can_renew"], true);
    assert_eq!(patched["access_token_ttl"], 120);
    assert_eq!(patched["token_lifetime"], 180 * 86_400);
    assert_eq!(patched["metadata"], json!({"k": "v"}));
    assert!(patched["expires_at"].is_string());
    let cleared = app
        .admin(
            "PATCH",
            &path,
            &token,
            Some(json!({"description": null, "expires_at": null, "allowed_ips": []})),
        )
        .json();
    assert!(cleared["description"].is_null() && cleared["expires_at"].is_null());
    assert_eq!(cleared["name"], "renamed", "untouched fields stay");
    for field in ["kind", "role", "scopes", "tenant_id", "device_group_id"] {
        let response = app.admin("PATCH", &path, &token, Some(json!({ field: "x" })));
        let error = response.assert_error(400, "invalid_request");
        assert!(
            error["error_description"].as_str().unwrap().contains(field),
            "{field}"
        );
    }
    app.admin("PATCH", &path, &token, Some(json!({"colour": "red"})))
        .assert_error(400, "invalid_request");
    app.admin(
        "PATCH",
        &path,
        &token,
        Some(json!({"access_token_ttl": "soon"})),
    )
    .assert_error(400, "invalid_request");
    app.admin(
        "PATCH",
        "/admin/v1/clients/kwc_nope",
        &token,
        Some(json!({"name": "x"})),
    )
    .assert_error(404, "not_found");
    // Turning renewal off stops renewal at once.
    let access = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(
        app.get("/api/v1/token/renew", Auth::Bearer(&access)).status,
        200
    );
    app.admin("PATCH", &path, &token, Some(json!({"can_renew": false})));
    app.get("/api/v1/token/renew", Auth::Bearer(&access))
        .assert_error(403, "access_denied");
}

#[test]
fn disable_enable_revoke_and_delete_follow_the_lifecycle() {
    let app = spawn_app();
    let token = app.admin_token();
    let (client, secret) = app.new_client("reader", |_| {});
    let id = client.client_id.clone();
    let access = app.token_for(&id, &secret, &[]);
    let post = |action: &str| {
        app.admin(
            "POST",
            &format!("/admin/v1/clients/{id}/{action}"),
            &token,
            None,
        )
    };
    app.admin("DELETE", &format!("/admin/v1/clients/{id}"), &token, None)
        .assert_error(409, "conflict");
    assert_eq!(post("disable").json()["status"], "disabled");
    assert_eq!(app.introspect(&access)["active"], false);
    assert_eq!(post("enable").json()["status"], "active");
    assert_eq!(
        app.introspect(&access)["active"],
        true,
        "enabling brings back unexpired tokens"
    );
    let revoked = post("revoke").json();
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(app.introspect(&access)["active"], false);
    post("enable").assert_error(409, "conflict");
    post("disable").assert_error(409, "conflict");
    post("revoke").assert_error(409, "conflict");
    post("secret").assert_error(409, "conflict");
    app.admin(
        "PATCH",
        &format!("/admin/v1/clients/{id}"),
        &token,
        Some(json!({"name": "x"})),
    )
    .assert_error(409, "conflict");
    // Deleting needs clients:delete.
    let writer = app.tenant_admin(&app.root_tenant, Some(&["clients:write", "clients:read"]));
    app.admin("DELETE", &format!("/admin/v1/clients/{id}"), &writer, None)
        .assert_error(403, "insufficient_scope");
    let deleted = app.admin("DELETE", &format!("/admin/v1/clients/{id}"), &token, None);
    assert_eq!(deleted.status, 204);
    app.admin("GET", &format!("/admin/v1/clients/{id}"), &token, None)
        .assert_error(404, "not_found");
    let audit = app
        .admin(
            "GET",
            &format!("/admin/v1/audit?target={id}&action=client.delete"),
            &token,
            None,
        )
        .json();
    assert_eq!(
        audit["items"].as_array().unwrap().len(),
        1,
        "the audit log keeps that it existed"
    );
}

#[test]
fn a_new_secret_stops_the_old_one_at_once_or_after_its_grace() {
    // The grace is checked against the directory's clock: moved, not slept.
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(|s| s.clock = Some(clock.clone()));
    let token = app.admin_token();
    let (client, old) = app.new_client("reader", |_| {});
    let path = format!("/admin/v1/clients/{}/secret", client.client_id);
    let works = |secret: &str| {
        app.post_form(
            "/oauth/token",
            &[GRANT],
            Auth::Basic(&client.client_id, secret),
        )
        .status
            == 200
    };
    let response = app.admin("POST", &path, &token, None);
    assert_eq!(response.status, 200, "{}", response.body);
    let new = response.json()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(works(&new));
    assert!(!works(&old), "grace 0: the old secret stops at once");

    let graced = app
        .admin("POST", &path, &token, Some(json!({"grace_seconds": 2})))
        .json();
    let newest = graced["client_secret"].as_str().unwrap().to_string();
    // The grace runs from the rotation (the store's time, at or before now).
    clock.set_ms(SystemClock.now_ms());
    assert!(works(&newest) && works(&new), "both work during the grace");
    clock.advance(std::time::Duration::from_secs(2));
    assert!(works(&newest));
    assert!(!works(&new), "the grace is over");
    for bad in [
        json!({"grace_seconds": -1}),
        json!({"grace_seconds": 604_801}),
        json!({"grace": 1}),
    ] {
        app.admin("POST", &path, &token, Some(bad))
            .assert_error(400, "invalid_request");
    }
    let (api, _) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/secret", api.client_id),
        &token,
        None,
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn two_concurrent_secret_rotations_never_lose_one_silently() {
    let app = spawn_app();
    let token = app.admin_token();
    let (client, _) = app.new_client("reader", |_| {});
    let path = format!("/admin/v1/clients/{}/secret", client.client_id);
    for _ in 0..5 {
        let results: Vec<crate::helpers::TestResponse> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| app.admin("POST", &path, &token, None)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secrets: Vec<String> = results
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json()["client_secret"].as_str().unwrap().to_string())
            .collect();
        for r in &results {
            assert!(r.status == 200 || r.status == 409, "{}", r.body);
        }
        assert!(!secrets.is_empty());
        let working = secrets
            .iter()
            .filter(|s| {
                app.post_form("/oauth/token", &[GRANT], Auth::Basic(&client.client_id, s))
                    .status
                    == 200
            })
            .count();
        assert_eq!(
            working, 1,
            "exactly the last applied rotation's secret works"
        );
    }
}

#[test]
fn reissue_gives_a_new_token_while_earlier_strings_work_and_tokens_list_without_values() {
    let app = spawn_app();
    let token = app.admin_token();
    let (client, first) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    let path = format!("/admin/v1/clients/{}/tokens", client.client_id);
    let response = app.admin("POST", &path, &token, None);
    assert_eq!(response.status, 201, "{}", response.body);
    let body = response.json();
    let second = body["token"].as_str().unwrap();
    assert!(body["token_expires_at"].is_string());
    assert_ne!(second, first);
    assert_eq!(app.introspect(second)["active"], true);
    assert_eq!(app.introspect(&first)["active"], true);
    let listed = app.admin("GET", &path, &token, None);
    assert!(!listed.body.contains(&first) && !listed.body.contains(second));
    let items = listed.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    for item in &items {
        for field in ["id", "prefix", "issued_at", "expires_at", "revoked_at"] {
            assert!(item.get(field).is_some(), "{field}");
        }
        assert!(item["prefix"].as_str().unwrap().starts_with("kwt_"));
        assert!(item["prefix"].as_str().unwrap().len() < 16);
    }
    assert!(
        first.starts_with(items[0]["prefix"].as_str().unwrap()),
        "oldest first"
    );
    let (cc, _) = app.new_client("reader", |_| {});
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/tokens", cc.client_id),
        &token,
        None,
    )
    .assert_error(400, "invalid_request");
    // Revoking one string shows in the list.
    app.post_form("/oauth/revoke", &[("token", &first)], Auth::Bearer(&first));
    let items = app.admin("GET", &path, &token, None).json()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(items[0]["revoked_at"].is_string());
    assert!(items[1]["revoked_at"].is_null());
}

#[test]
fn no_secret_or_token_is_ever_stored_in_clear() {
    use diesel::prelude::*;
    use diesel::sql_types::Text;
    #[derive(QueryableByName)]
    struct Dump {
        #[diesel(sql_type = Text)]
        text: String,
    }
    let app = spawn_app();
    let token = app.admin_token();
    let mut plaintexts = vec![app.admin_secret.clone()];
    let cc = app
        .admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "a", "role": "reader"})),
        )
        .json();
    plaintexts.push(cc["client_secret"].as_str().unwrap().into());
    let api = app
        .admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "b", "role": "reader", "kind": "api_token", "can_renew": true})),
        )
        .json();
    plaintexts.push(api["token"].as_str().unwrap().into());
    let rotated = app
        .admin(
            "POST",
            &format!(
                "/admin/v1/clients/{}/secret",
                cc["client_id"].as_str().unwrap()
            ),
            &token,
            Some(json!({"grace_seconds": 60})),
        )
        .json();
    plaintexts.push(rotated["client_secret"].as_str().unwrap().into());
    let reissued = app
        .admin(
            "POST",
            &format!(
                "/admin/v1/clients/{}/tokens",
                api["client_id"].as_str().unwrap()
            ),
            &token,
            None,
        )
        .json();
    plaintexts.push(reissued["token"].as_str().unwrap().into());
    let renewed = app
        .get(
            "/api/v1/token/renew",
            Auth::Bearer(api["token"].as_str().unwrap()),
        )
        .json();
    plaintexts.push(renewed["access_token"].as_str().unwrap().into());

    let mut conn = app.conn();
    let tables = [
        ("clients", "client_id || name || scopes || metadata"),
        ("client_secrets", "secret_hash || id"),
        ("api_tokens", "token_hash || prefix || id"),
        (
            "audit_events",
            "actor || action || coalesce(target, '') || details",
        ),
    ];
    let mut everything = String::new();
    for (table, expr) in tables {
        let sql = format!("SELECT {expr} AS text FROM {table}");
        let rows: Vec<Dump> = match &mut conn {
            keyward::store::AnyConnection::Sqlite(c) => diesel::sql_query(sql).load(c).unwrap(),
            keyward::store::AnyConnection::Postgresql(c) => diesel::sql_query(sql).load(c).unwrap(),
        };
        assert!(!rows.is_empty(), "{table} has rows");
        for row in rows {
            everything.push_str(&row.text);
        }
    }
    for plaintext in &plaintexts {
        assert!(
            !everything.contains(plaintext.as_str()),
            "found a secret in clear"
        );
        // Not even the random body without its prefix.
        assert!(!everything.contains(&plaintext[4..20]));
    }
    assert!(
        everything.contains(&keyward::tokens::opaque::sha256_hex(
            plaintexts[1].as_bytes()
        )),
        "stored as SHA-256"
    );
}

#[test]
fn last_used_at_follows_use_without_a_write_per_request() {
    let app = spawn_app();
    let token = app.admin_token();
    let (client, secret) = app.new_client("reader", |_| {});
    assert!(app
        .admin(
            "GET",
            &format!("/admin/v1/clients/{}", client.client_id),
            &token,
            None
        )
        .json()["last_used_at"]
        .is_null());
    app.token_for(&client.client_id, &secret, &[]);
    // Written by the next batch (every 5 s), not by the request itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    loop {
        let shown = app
            .admin(
                "GET",
                &format!("/admin/v1/clients/{}", client.client_id),
                &token,
                None,
            )
            .json();
        if shown["last_used_at"].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_used_at never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

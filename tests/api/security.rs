//! The attacks of the security review, each retried, and the escalation
//! matrix: every admin action on clients, for a matrix of callers, against
//! every kind of target (API.md section 3, "No caller can gain or hand out
//! more than it holds").

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Auth, Signer, TestApp, TestIssuer};

/// A custom role at the root tenant, made through the admin API.
fn custom_role(app: &TestApp, admin: &str, name: &str, scopes: &[&str]) {
    let response = app.admin(
        "POST",
        "/admin/v1/roles",
        admin,
        Some(json!({"name": name, "scopes": scopes})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
}

/// A client of `role` in `tenant`, and its token.
fn client_token(app: &TestApp, role: &str, tenant: &str) -> (String, String) {
    let (client, secret) = app.new_client(role, |c| c.tenant_id = Some(tenant.to_string()));
    let token = app.token_for(&client.client_id, &secret, &[]);
    (client.client_id, token)
}

#[test]
fn a_helpdesk_caller_cannot_take_over_the_root_admin_or_act_on_more_privileged_clients() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    let (_, helpdesk) = client_token(&app, "helpdesk", &app.root_tenant);
    let root_admin = format!("/admin/v1/clients/{}", app.admin_id);

    let takeover = app.admin("POST", &format!("{root_admin}/secret"), &helpdesk, None);
    takeover.assert_error(403, "insufficient_scope");
    assert!(!takeover.body.contains("kws_"), "no secret is handed out");
    for action in ["disable", "revoke"] {
        app.admin("POST", &format!("{root_admin}/{action}"), &helpdesk, None)
            .assert_error(403, "insufficient_scope");
    }
    app.admin(
        "PATCH",
        &root_admin,
        &helpdesk,
        Some(json!({"allowed_ips": ["192.0.2.1/32"]})),
    )
    .assert_error(403, "insufficient_scope");
    // The root admin is untouched and still works.
    app.token_for(&app.admin_id, &app.admin_secret, &[]);
    let (api_admin, _) = app.new_client("admin", |c| c.kind = Some("api_token".into()));
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/tokens", api_admin.client_id),
        &helpdesk,
        None,
    )
    .assert_error(403, "insufficient_scope");
}

#[test]
fn a_caller_cannot_change_disable_or_enable_its_own_client() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    let (me, token) = client_token(&app, "helpdesk", &app.root_tenant);
    let path = format!("/admin/v1/clients/{me}");
    for body in [json!({"allowed_ips": []}), json!({"expires_at": null})] {
        app.admin("PATCH", &path, &token, Some(body))
            .assert_error(403, "insufficient_scope");
    }
    for action in ["disable", "enable"] {
        app.admin("POST", &format!("{path}/{action}"), &token, None)
            .assert_error(403, "insufficient_scope");
    }
    // The root admin cannot lock everyone out by disabling itself either.
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/disable", app.admin_id),
        &admin,
        None,
    )
    .assert_error(403, "insufficient_scope");
    // What it may do to itself: a new secret, then revoking itself.
    let rotated = app.admin("POST", &format!("{path}/secret"), &token, None);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let revoked = app.admin("POST", &format!("{path}/revoke"), &token, None);
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(app.introspect(&token)["active"], false);
}

#[test]
fn a_role_cannot_be_smuggled_past_the_policy_by_narrowing_scopes() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    let (_, helpdesk) = client_token(&app, "helpdesk", &app.root_tenant);
    for body in [
        json!({"name": "x", "role": "admin", "scopes": []}),
        json!({"name": "x", "role": "admin", "scopes": ["clients:read"]}),
        json!({"name": "x", "role": "resource_server", "scopes": []}),
    ] {
        app.admin("POST", "/admin/v1/clients", &helpdesk, Some(body))
            .assert_error(403, "insufficient_scope");
    }
    // Nothing was created.
    let listed = app.admin("GET", "/admin/v1/clients?role=admin", &admin, None);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    // Within what it holds, it may create.
    let ok = app.admin(
        "POST",
        "/admin/v1/clients",
        &helpdesk,
        Some(json!({"name": "bot", "role": "uploader"})),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[test]
fn role_names_are_unique_regardless_of_case_including_the_built_ins() {
    let app = spawn_app();
    let admin = app.admin_token();
    for name in ["Admin", "ADMIN", "Resource_Server", "READER"] {
        app.admin(
            "POST",
            "/admin/v1/roles",
            &admin,
            Some(json!({"name": name, "scopes": ["read"]})),
        )
        .assert_error(409, "conflict");
    }
    custom_role(&app, &admin, "Operators", &["read"]);
    app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": "operators", "scopes": ["read"]})),
    )
    .assert_error(409, "conflict");
}

#[test]
fn custom_roles_belong_to_a_tenant_and_are_seen_and_given_only_within_its_reach() {
    let app = spawn_app();
    let admin = app.admin_token();
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let child_admin = app.tenant_admin(&child, None);
    let sibling_admin = app.tenant_admin(&sibling, None);
    let made = app.admin(
        "POST",
        "/admin/v1/roles",
        &child_admin,
        Some(json!({"name": "child-ops", "scopes": ["read"]})),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["tenant_id"], child.as_str());
    custom_role(&app, &admin, "fleet", &["read"]);

    let names = |token: &str| -> Vec<String> {
        let listed = app.admin("GET", "/admin/v1/roles?limit=500", token, None);
        assert_eq!(listed.status, 200, "{}", listed.body);
        listed.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Below, own and above are listed; a sibling's is not.
    assert!(names(&admin).contains(&"child-ops".to_string()));
    assert!(names(&child_admin).contains(&"fleet".to_string()));
    assert!(!names(&sibling_admin).contains(&"child-ops".to_string()));
    assert!(names(&sibling_admin).contains(&"admin".to_string()));

    // The sibling cannot use it; the root cannot give it outside the child.
    app.admin(
        "POST",
        "/admin/v1/clients",
        &sibling_admin,
        Some(json!({"name": "x", "role": "child-ops"})),
    )
    .assert_error(400, "invalid_request");
    app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "x", "role": "child-ops"})),
    )
    .assert_error(400, "invalid_request");
    let inside = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "x", "role": "child-ops", "tenant_id": child})),
    );
    assert_eq!(inside.status, 201, "{}", inside.body);
    // A role from above is given below.
    let from_above = app.admin(
        "POST",
        "/admin/v1/clients",
        &child_admin,
        Some(json!({"name": "y", "role": "fleet"})),
    );
    assert_eq!(from_above.status, 201, "{}", from_above.body);
    // The child cannot change the role that belongs above it.
    app.admin(
        "PATCH",
        "/admin/v1/roles/fleet",
        &child_admin,
        Some(json!({"scopes": ["read", "upload"]})),
    )
    .assert_error(403, "insufficient_scope");
}

#[test]
fn roles_change_and_go_as_specified_and_their_holders_follow() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "ops", &["read"]);
    let (client, secret) = app.new_client("ops", |_| {});
    let before = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(app.introspect(&before)["scope"], "read");

    let patched = app.admin(
        "PATCH",
        "/admin/v1/roles/ops",
        &admin,
        Some(json!({"scopes": ["read", "upload"]})),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let after = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(app.introspect(&after)["scope"], "read upload");

    // Built-ins cannot change; a role still given cannot go.
    app.admin(
        "PATCH",
        "/admin/v1/roles/admin",
        &admin,
        Some(json!({"scopes": ["read"]})),
    )
    .assert_error(409, "conflict");
    app.admin("DELETE", "/admin/v1/roles/ops", &admin, None)
        .assert_error(409, "conflict");
    app.admin("DELETE", "/admin/v1/roles/reader", &admin, None)
        .assert_error(409, "conflict");
    app.admin("DELETE", "/admin/v1/roles/nosuch", &admin, None)
        .assert_error(404, "not_found");
    custom_role(&app, &admin, "spare", &["read"]);
    let gone = app.admin("DELETE", "/admin/v1/roles/spare", &admin, None);
    assert_eq!(gone.status, 204, "{}", gone.body);

    // A caller holding less cannot widen a role to admin scopes.
    custom_role(
        &app,
        &admin,
        "helpdesk",
        &[
            "clients:read",
            "clients:write",
            "tenants:read",
            "tenants:write",
        ],
    );
    let (_, helpdesk) = client_token(&app, "helpdesk", &app.root_tenant);
    app.admin(
        "PATCH",
        "/admin/v1/roles/ops",
        &helpdesk,
        Some(json!({"scopes": ["read", "clients:delete"]})),
    )
    .assert_error(403, "insufficient_scope");
    app.admin(
        "POST",
        "/admin/v1/roles",
        &helpdesk,
        Some(json!({"name": "escalate", "scopes": ["audit:read"]})),
    )
    .assert_error(403, "insufficient_scope");
}

#[test]
fn a_tenant_cannot_move_away_from_a_custom_role_its_clients_use() {
    let app = spawn_app();
    let admin = app.admin_token();
    let a = app.create_tenant("a", None);
    let b = app.create_tenant("b", None);
    let a_child = app.create_tenant("a-child", Some(&a));
    let a_admin = app.tenant_admin(&a, None);
    let made = app.admin(
        "POST",
        "/admin/v1/roles",
        &a_admin,
        Some(json!({"name": "a-ops", "scopes": ["read"]})),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    app.new_client("a-ops", |c| c.tenant_id = Some(a_child.clone()));
    app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{a_child}"),
        &admin,
        Some(json!({"parent_id": b})),
    )
    .assert_error(409, "conflict");
    // A tenant that owns a role cannot be deleted while it does.
    let owner = app.create_tenant("owner", None);
    let made = app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": "owned", "scopes": ["read"], "tenant_id": owner})),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    app.admin(
        "DELETE",
        &format!("/admin/v1/tenants/{owner}"),
        &admin,
        None,
    )
    .assert_error(409, "conflict");
    let gone = app.admin("DELETE", "/admin/v1/roles/owned", &admin, None);
    assert_eq!(gone.status, 204, "{}", gone.body);
    let deleted = app.admin(
        "DELETE",
        &format!("/admin/v1/tenants/{owner}"),
        &admin,
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
}

fn ip_restricted(app: &TestApp) -> (String, String) {
    let (client, secret) = app.new_client("admin", |c| {
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    (client.client_id, secret)
}

#[test]
fn allowed_ips_apply_at_introspection_revocation_and_the_admin_api() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (id, secret) = ip_restricted(&app);
    let inside = "10.1.2.3";
    let outside = "192.0.2.7";
    let token = {
        let r = app
            .request("POST", "/oauth/token")
            .basic(&id, &secret)
            .forwarded_for(inside)
            .send_form(&[("grant_type", "client_credentials")]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    };
    let subject = app.admin_token();
    // Introspection by secret and by bearer, revocation by secret.
    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let r = app
            .request("POST", path)
            .basic(&id, &secret)
            .forwarded_for(outside)
            .send_form(&[("token", &subject)]);
        r.assert_error(401, "invalid_client");
        assert!(r.header("www-authenticate").is_some());
        let ok = app
            .request("POST", path)
            .basic(&id, &secret)
            .forwarded_for(inside)
            .send_form(&[("token", &subject)]);
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    app.request("GET", "/admin/v1/clients")
        .bearer(&token)
        .forwarded_for(outside)
        .send()
        .assert_error(401, "invalid_token");
    assert_eq!(
        app.request("GET", "/admin/v1/clients")
            .bearer(&token)
            .forwarded_for(inside)
            .send()
            .status,
        200
    );
    // An API token of an IP-restricted client, the same.
    let (api, api_token) = app.new_client("admin", |c| {
        c.kind = Some("api_token".into());
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    app.request("GET", "/admin/v1/clients")
        .bearer(&api_token)
        .forwarded_for(outside)
        .send()
        .assert_error(401, "invalid_token");
    assert_eq!(
        app.request("GET", &format!("/admin/v1/clients/{}", api.client_id))
            .bearer(&api_token)
            .forwarded_for(inside)
            .send()
            .status,
        200
    );
}

#[test]
fn a_token_minted_for_another_audience_is_refused_at_keywards_own_endpoints() {
    let app = spawn_app();
    let (client, secret) = app.new_client("admin", |c| {
        c.audience = Some(vec!["https://rs.example.com".into()]);
    });
    let for_rs = app.token_for(&client.client_id, &secret, &[]);
    app.admin("GET", "/admin/v1/clients", &for_rs, None)
        .assert_error(401, "invalid_token");
    let r = app.post_form(
        "/oauth/introspect",
        &[("token", &for_rs)],
        Auth::Bearer(&for_rs),
    );
    r.assert_error(401, "invalid_token");
    // It is still a good token for the resource server that asks.
    assert_eq!(app.introspect(&for_rs)["active"], true);
    // Asking for the issuer as audience works even though the client's
    // audiences name only the resource server.
    let for_me = app.token_for(&client.client_id, &secret, &[("audience", &app.address)]);
    assert_eq!(
        app.admin("GET", "/admin/v1/clients", &for_me, None).status,
        200
    );
}

#[test]
fn a_token_narrowed_to_a_sub_tenant_acts_only_within_it() {
    let app = spawn_app();
    let child = app.create_tenant("child", None);
    let narrowed = app.token_for(&app.admin_id, &app.admin_secret, &[("tenant", &child)]);
    let (in_child, _) = app.new_client("uploader", |c| c.tenant_id = Some(child.clone()));
    let (in_root, _) = app.new_client("uploader", |_| {});
    app.admin(
        "GET",
        &format!("/admin/v1/clients/{}", in_root.client_id),
        &narrowed,
        None,
    )
    .assert_error(404, "not_found");
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/disable", in_root.client_id),
        &narrowed,
        None,
    )
    .assert_error(404, "not_found");
    let listed = app
        .admin("GET", "/admin/v1/clients", &narrowed, None)
        .json();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![in_child.client_id.as_str()]);
    assert_eq!(
        app.admin(
            "POST",
            &format!("/admin/v1/clients/{}/disable", in_child.client_id),
            &narrowed,
            None
        )
        .status,
        200
    );
    // Creating in the parent by naming it is the same as naming nothing.
    app.admin(
        "POST",
        "/admin/v1/clients",
        &narrowed,
        Some(json!({"name": "x", "role": "uploader", "tenant_id": app.root_tenant})),
    )
    .assert_error(404, "not_found");
}

#[test]
fn every_401_carries_www_authenticate() {
    let app = spawn_app();
    let cases = [
        app.post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Auth::None,
        ),
        app.post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.admin_id),
                ("client_secret", "kws_wrong"),
            ],
            Auth::None,
        ),
        app.post_form("/oauth/introspect", &[("token", "x")], Auth::None),
        app.post_form("/oauth/revoke", &[("token", "x")], Auth::Bearer("nope")),
        app.get("/admin/v1/clients", Auth::None),
        app.get("/api/v1/token/renew", Auth::Bearer("nope")),
    ];
    for response in cases {
        assert_eq!(response.status, 401, "{}", response.body);
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic") || challenge.starts_with("Bearer"),
            "{challenge:?}: {}",
            response.body
        );
    }
}

// ---------------------------------------------------------------------------
// The escalation matrix.

#[derive(Clone, Copy, Debug)]
enum Action {
    Get,
    Patch,
    Secret,
    Reissue,
    Disable,
    Enable,
    Revoke,
    Delete,
}

const ACTIONS: [Action; 8] = [
    Action::Get,
    Action::Patch,
    Action::Secret,
    Action::Reissue,
    Action::Disable,
    Action::Enable,
    Action::Revoke,
    Action::Delete,
];

/// Targets, in the column order of the expectations below: a root admin,
/// a helpdesk client and an uploader in the root tenant, an uploader in the
/// child tenant, an uploader in the sibling tenant.
const TARGETS: [(&str, &str); 5] = [
    ("admin", "root"),
    ("helpdesk", "root"),
    ("uploader", "root"),
    ("uploader", "child"),
    ("uploader", "sibling"),
];

fn run_action(app: &TestApp, caller: &str, action: Action, target: &str) -> u16 {
    let path = format!("/admin/v1/clients/{target}");
    let response = match action {
        Action::Get => app.admin("GET", &path, caller, None),
        Action::Patch => app.admin("PATCH", &path, caller, Some(json!({"name": "renamed"}))),
        Action::Secret => app.admin("POST", &format!("{path}/secret"), caller, None),
        Action::Reissue => app.admin("POST", &format!("{path}/tokens"), caller, None),
        Action::Disable => app.admin("POST", &format!("{path}/disable"), caller, None),
        Action::Enable => app.admin("POST", &format!("{path}/enable"), caller, None),
        Action::Revoke => app.admin("POST", &format!("{path}/revoke"), caller, None),
        Action::Delete => app.admin("DELETE", &path, caller, None),
    };
    if response.status >= 400 {
        // Every refusal is in the contract's shape.
        let body = response.json();
        assert!(body["error"].is_string(), "{}", response.body);
    }
    response.status
}

#[test]
fn escalation_matrix_no_caller_acts_beyond_its_reach_and_rights() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    custom_role(&app, &admin, "viewer", &["clients:read"]);
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let tenant_of = |name: &str| match name {
        "root" => app.root_tenant.clone(),
        "child" => child.clone(),
        _ => sibling.clone(),
    };

    let (_, full) = client_token(&app, "admin", &app.root_tenant);
    let (_, helpdesk) = client_token(&app, "helpdesk", &app.root_tenant);
    let (_, viewer) = client_token(&app, "viewer", &app.root_tenant);
    let (_, child_admin) = client_token(&app, "admin", &child);
    let narrowed = app.token_for(&app.admin_id, &app.admin_secret, &[("tenant", &child)]);

    // Expected status per action, one column per target (see TARGETS).
    // 200/201/204 done, 403 scope or rights, 404 out of reach.
    let ok = |a: Action| match a {
        Action::Delete => 204,
        Action::Reissue => 201,
        _ => 200,
    };
    let callers = [
        ("full admin", &full),
        ("helpdesk", &helpdesk),
        ("viewer", &viewer),
        ("child admin", &child_admin),
        ("narrowed to child", &narrowed),
    ];
    let expected = |caller: &str, action: Action| -> [u16; 5] {
        let done = ok(action);
        match (caller, action) {
            ("full admin", _) => [done; 5],
            ("helpdesk", Action::Get) => [200; 5],
            // clients:delete is not the helpdesk's.
            ("helpdesk", Action::Delete) => [403; 5],
            ("helpdesk", _) => [403, done, done, done, done],
            ("viewer", Action::Get) => [200; 5],
            ("viewer", _) => [403; 5],
            ("child admin", _) | ("narrowed to child", _) => [404, 404, 404, done, 404],
            _ => unreachable!(),
        }
    };

    let mut checked = 0;
    let mut failures = Vec::new();
    for (caller_name, token) in callers {
        for action in ACTIONS {
            let want = expected(caller_name, action);
            for (column, (role, tenant)) in TARGETS.iter().enumerate() {
                let kind = match action {
                    Action::Reissue => "api_token",
                    _ => "client_credentials",
                };
                let (target, _) = app.new_client(role, |c| {
                    c.tenant_id = Some(tenant_of(tenant));
                    c.kind = Some(kind.into());
                });
                if matches!(action, Action::Enable | Action::Delete) {
                    app.set_status(
                        &target.client_id,
                        keyward::service::clients::StatusChange::Disable,
                    );
                }
                let got = run_action(&app, token, action, &target.client_id);
                checked += 1;
                if got != want[column] {
                    failures.push(format!(
                        "{caller_name} {action:?} {role}@{tenant}: got {got}, want {}",
                        want[column]
                    ));
                }
            }
        }
    }
    // Itself: a helpdesk client acting on its own client, by each action.
    for action in ACTIONS {
        let kind = match action {
            Action::Reissue => "api_token",
            _ => "client_credentials",
        };
        let (me, credential) = app.new_client("helpdesk", |c| c.kind = Some(kind.into()));
        // An api_token client's token is its bearer credential.
        let token = if kind == "api_token" {
            credential
        } else {
            app.token_for(&me.client_id, &credential, &[])
        };
        let want = match action {
            Action::Get => 200,
            Action::Secret | Action::Revoke => 200,
            Action::Reissue => 201,
            // Change, disable, enable: never on itself; delete: not its scope.
            Action::Patch | Action::Disable | Action::Enable | Action::Delete => 403,
        };
        let got = run_action(&app, &token, action, &me.client_id);
        checked += 1;
        if got != want {
            failures.push(format!(
                "helpdesk on itself {action:?}: got {got}, want {want}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 5 * 8 * 5 + 8);
}

#[test]
fn failed_authentications_are_throttled_per_address_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth_failure_limit = 5;
        s.auth_failure_window = 60;
    });
    let from = |ip: &str, secret: &str| {
        app.request("POST", "/oauth/token")
            .basic(&app.admin_id, secret)
            .forwarded_for(ip)
            .send_form(&[("grant_type", "client_credentials")])
    };
    for _ in 0..5 {
        from("192.0.2.1", "kws_wrong").assert_error(401, "invalid_client");
    }
    // Past the limit: 429 before the credentials are looked at, right or not.
    let throttled = from("192.0.2.1", &app.admin_secret);
    throttled.assert_error(429, "slow_down");
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Every endpoint that authenticates answers that address the same.
    let admin = app.admin_token();
    app.request("GET", "/admin/v1/clients")
        .bearer(&admin)
        .forwarded_for("192.0.2.1")
        .send()
        .assert_error(429, "slow_down");
    // Other addresses are not slowed by those failures.
    assert_eq!(from("192.0.2.2", &app.admin_secret).status, 200);
    assert_eq!(
        app.request("GET", "/admin/v1/clients")
            .bearer(&admin)
            .forwarded_for("192.0.2.2")
            .send()
            .status,
        200
    );
    // The failures were counted by reason (the registry is per process, and
    // other tests in it fail too: at least these five).
    let metrics = app.get("/metrics", Auth::None).body;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyward_auth_failures_total{reason=\"bad_secret\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(counted >= 5, "{metrics}");
}

#[test]
fn a_flood_of_unknown_client_ids_does_not_reach_the_store_each_time() {
    let app = spawn_app();
    let before = app.db_operations.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..20 {
        app.post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Auth::Basic("kwc_00000000000000000000", "kws_x"),
        )
        .assert_error(401, "invalid_client");
    }
    let used = app.db_operations.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(used <= 2, "{used} database round trips for 20 requests");
    // A client created meanwhile with that id would be found: creating one
    // announces it, and the node forgets what it remembered.
    let (client, secret) = app.new_client("reader", |_| {});
    app.token_for(&client.client_id, &secret, &[]);
}

#[test]
fn an_underscore_in_a_tenant_id_is_no_wildcard_for_reach() {
    use diesel::prelude::*;
    use keyward::store::models::Tenant;
    use keyward::store::schema::tenants;
    let app = spawn_app();
    let root_path = format!("/{}/", app.root_tenant);
    let mut conn = app.conn();
    for id in ["tn_q", "tnXq"] {
        diesel::insert_into(tenants::table)
            .values(&Tenant {
                id: id.into(),
                name: id.into(),
                parent_id: Some(app.root_tenant.clone()),
                path: format!("{root_path}{id}/"),
                owner_emails: "[]".into(),
                created_at: 0,
                updated_at: 0,
            })
            .execute(&mut conn)
            .unwrap();
    }
    // A client in the look-alike tenant must stay out of reach too.
    app.new_client("uploader", |c| c.tenant_id = Some("tnXq".into()));
    let admin = app.tenant_admin("tn_q", None);
    let listed = app.admin("GET", "/admin/v1/tenants", &admin, None).json();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["tn_q"]);
    let clients = app.admin("GET", "/admin/v1/clients", &admin, None).json();
    assert!(clients["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["tenant_id"] == "tn_q"));
}

// ---------------------------------------------------------------------------
// The escalation matrix for people: the same policy decides for users.

#[derive(Clone, Copy, Debug, PartialEq)]
enum UserAct {
    Get,
    Rename,
    Role,
    Disable,
    SetupLink,
    Delete,
}

const USER_ACTS: [UserAct; 6] = [
    UserAct::Get,
    UserAct::Rename,
    UserAct::Role,
    UserAct::Disable,
    UserAct::SetupLink,
    UserAct::Delete,
];

/// A caller of the admin API: a bearer token, or a person's cookie and
/// CSRF token.
enum Caller {
    Bearer(String),
    Session { cookie: String, csrf: String },
}

fn run_user_act(app: &TestApp, caller: &Caller, act: UserAct, target: &str) -> u16 {
    let path = format!("/admin/v1/users/{target}");
    let (method, path, body) = match act {
        UserAct::Get => ("GET", path, None),
        UserAct::Rename => ("PATCH", path, Some(json!({"name": "Renamed"}))),
        UserAct::Role => ("PATCH", path, Some(json!({"role": "reader"}))),
        UserAct::Disable => ("PATCH", path, Some(json!({"status": "disabled"}))),
        UserAct::SetupLink => ("POST", format!("{path}/setup-link"), None),
        UserAct::Delete => ("DELETE", path, None),
    };
    let request = app.request(method, &path);
    let request = match caller {
        Caller::Bearer(token) => request.bearer(token),
        Caller::Session { cookie, csrf } => request
            .header("Cookie", cookie)
            .header("X-CSRF-Token", csrf),
    };
    let response = match body {
        Some(body) => request.send_json(body),
        None => request.send(),
    };
    if response.status >= 400 {
        assert!(response.json()["error"].is_string(), "{}", response.body);
    }
    response.status
}

fn new_user(app: &TestApp, admin: &str, role: &str, tenant: &str) -> (String, String) {
    let email = format!("{}@people.example", keyward::tokens::opaque::random_id("u"));
    let created = app.admin(
        "POST",
        "/admin/v1/users",
        admin,
        Some(
            json!({"email": email, "name": "P", "role": role, "tenant_id": tenant,
                    "password": "a long enough password"}),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    (
        created.json()["user_id"].as_str().unwrap().to_string(),
        email,
    )
}

fn signed_in(app: &TestApp, email: &str) -> Caller {
    let answer = app
        .request("POST", "/console/sign-in")
        .send_form(&[("email", email), ("password", "a long enough password")]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = app
        .request("GET", "/admin/v1/me")
        .header("Cookie", &cookie)
        .send();
    let csrf = me.json()["csrf_token"].as_str().unwrap().to_string();
    Caller::Session { cookie, csrf }
}

#[test]
fn escalation_matrix_for_people_no_caller_acts_beyond_its_reach_and_rights() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "people", &["users:read", "users:write"]);
    custom_role(&app, &admin, "people_viewer", &["users:read"]);
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let tenant_of = |name: &str| match name {
        "root" => app.root_tenant.clone(),
        "child" => child.clone(),
        _ => sibling.clone(),
    };
    let targets = [
        ("admin", "root"),
        ("reader", "root"),
        ("reader", "child"),
        ("reader", "sibling"),
    ];

    let (_, person_email) = new_user(&app, &admin, "admin", &app.root_tenant);
    let callers = [
        (
            "full admin",
            Caller::Bearer(client_token(&app, "admin", &app.root_tenant).1),
        ),
        (
            "people",
            Caller::Bearer(client_token(&app, "people", &app.root_tenant).1),
        ),
        (
            "people viewer",
            Caller::Bearer(client_token(&app, "people_viewer", &app.root_tenant).1),
        ),
        (
            "child admin",
            Caller::Bearer(client_token(&app, "admin", &child).1),
        ),
        (
            "narrowed to child",
            Caller::Bearer(app.token_for(&app.admin_id, &app.admin_secret, &[("tenant", &child)])),
        ),
        ("admin person", signed_in(&app, &person_email)),
    ];
    let ok = |a: UserAct| match a {
        UserAct::Delete => 204,
        UserAct::SetupLink => 201,
        _ => 200,
    };
    let expected = |caller: &str, act: UserAct| -> [u16; 4] {
        let done = ok(act);
        match (caller, act) {
            ("full admin" | "admin person", _) => [done; 4],
            ("people" | "people viewer", UserAct::Get) => [200; 4],
            // An admin person's rights are beyond users:*; readers' are not.
            ("people", _) => [403, done, done, done],
            ("people viewer", _) => [403; 4],
            ("child admin" | "narrowed to child", _) => [404, 404, done, 404],
            _ => unreachable!(),
        }
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    for (caller_name, caller) in &callers {
        for act in USER_ACTS {
            let want = expected(caller_name, act);
            for (column, (role, tenant)) in targets.iter().enumerate() {
                let (target, _) = new_user(&app, &admin, role, &tenant_of(tenant));
                let got = run_user_act(&app, caller, act, &target);
                checked += 1;
                if got != want[column] {
                    failures.push(format!(
                        "{caller_name} {act:?} {role}@{tenant}: got {got}, want {}",
                        want[column]
                    ));
                }
            }
        }
    }
    // Itself: a signed-in person may read, rename and get a new setup link
    // for itself, never change its own role or status or delete itself.
    for act in USER_ACTS {
        let (me_id, email) = new_user(&app, &admin, "admin", &app.root_tenant);
        let caller = signed_in(&app, &email);
        let want = match act {
            UserAct::Role | UserAct::Disable | UserAct::Delete => 403,
            other => ok(other),
        };
        let got = run_user_act(&app, &caller, act, &me_id);
        checked += 1;
        if got != want {
            failures.push(format!("person on itself {act:?}: got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 6 * 6 * 4 + 6);
}

/// A token is worth what its client holds now: narrowing the client's role
/// stops tokens that carry a scope it no longer has, at once.
#[test]
fn narrowing_a_role_stops_tokens_that_carry_more_than_it_now_allows() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "shipper", &["ship:read", "ship:write"]);
    let (id, secret) = client_token_credentials(&app, "shipper");
    let both = app.token_for(&id, &secret, &[]);
    let read_only = app.token_for(&id, &secret, &[("scope", "ship:read")]);
    assert_eq!(app.introspect(&both)["active"], true);
    let narrowed = app.admin(
        "PATCH",
        "/admin/v1/roles/shipper",
        &admin,
        Some(json!({"scopes": ["ship:read"]})),
    );
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    assert_eq!(app.introspect(&both)["active"], false);
    assert_eq!(app.introspect(&read_only)["active"], true);
    let fresh = app.token_for(&id, &secret, &[]);
    assert_eq!(app.introspect(&fresh)["scope"], "ship:read");
}

fn client_token_credentials(app: &TestApp, role: &str) -> (String, String) {
    let (view, secret) = app.new_client(role, |_| {});
    (view.client_id, secret)
}

// ---------------------------------------------------------------------------
// The escalation matrix for the console: its forms go through the same
// authentication and policy as the admin API, with the session's CSRF token.

/// A console form sent with a person's session; `csrf` None sends none.
fn console_form(
    app: &TestApp,
    cookie: &str,
    csrf: Option<&str>,
    path: &str,
    fields: &[(&str, &str)],
) -> crate::helpers::TestResponse {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if let Some(csrf) = csrf {
        form.push(("csrf_token", csrf));
    }
    app.request("POST", path)
        .header("Cookie", cookie)
        .header("Accept", "text/html")
        .send_form(&form)
}

fn run_console_action(app: &TestApp, caller: &Caller, action: Action, target: &str) -> u16 {
    let Caller::Session { cookie, csrf } = caller else {
        unreachable!("console callers are people")
    };
    let page = format!("/console/clients/{target}");
    let answer = match action {
        Action::Get => app
            .request("GET", &page)
            .header("Cookie", cookie)
            .header("Accept", "text/html")
            .send(),
        Action::Patch => console_form(
            app,
            cookie,
            Some(csrf),
            &format!("{page}/edit"),
            &[("name", "renamed")],
        ),
        other => {
            let action = match other {
                Action::Secret => "secret",
                Action::Reissue => "reissue",
                Action::Disable => "disable",
                Action::Enable => "enable",
                Action::Revoke => "revoke",
                _ => "delete",
            };
            console_form(app, cookie, Some(csrf), &format!("{page}/{action}"), &[])
        }
    };
    // A person always gets a page (or a redirect), never JSON.
    if answer.status != 303 {
        assert!(
            answer
                .header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{action:?}: {}",
            answer.body
        );
    }
    answer.status
}

/// What the root admin sees of a client: status and last change; None once
/// deleted.
fn client_state(app: &TestApp, admin: &str, id: &str) -> Option<(String, String, String)> {
    let got = app.admin("GET", &format!("/admin/v1/clients/{id}"), admin, None);
    (got.status == 200).then(|| {
        let body = got.json();
        (
            body["status"].as_str().unwrap().to_string(),
            body["updated_at"].as_str().unwrap().to_string(),
            body["name"].as_str().unwrap().to_string(),
        )
    })
}

#[test]
fn escalation_matrix_for_the_console_no_person_acts_beyond_their_reach_and_rights() {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    custom_role(&app, &admin, "viewer", &["clients:read"]);
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let tenant_of = |name: &str| match name {
        "root" => app.root_tenant.clone(),
        "child" => child.clone(),
        _ => sibling.clone(),
    };
    let person =
        |role: &str, tenant: &str| signed_in(&app, &new_user(&app, &admin, role, tenant).1);
    let callers = [
        ("full admin", person("admin", &app.root_tenant)),
        ("helpdesk", person("helpdesk", &app.root_tenant)),
        ("viewer", person("viewer", &app.root_tenant)),
        ("child admin", person("admin", &child)),
    ];
    // 303 (done, back to the page) or 200 (a credential shown once) when
    // allowed; 403 scope or rights; 404 out of reach.
    let ok = |a: Action| match a {
        Action::Get | Action::Secret | Action::Reissue => 200,
        _ => 303,
    };
    let expected = |caller: &str, action: Action| -> [u16; 5] {
        let done = ok(action);
        match (caller, action) {
            ("full admin", _) => [done; 5],
            ("helpdesk", Action::Get) => [200; 5],
            ("helpdesk", Action::Delete) => [403; 5],
            ("helpdesk", _) => [403, done, done, done, done],
            ("viewer", Action::Get) => [200; 5],
            ("viewer", _) => [403; 5],
            ("child admin", _) => [404, 404, 404, done, 404],
            _ => unreachable!(),
        }
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    for (caller_name, caller) in &callers {
        for action in ACTIONS {
            let want = expected(caller_name, action);
            for (column, (role, tenant)) in TARGETS.iter().enumerate() {
                let kind = match action {
                    Action::Reissue => "api_token",
                    _ => "client_credentials",
                };
                let (target, _) = app.new_client(role, |c| {
                    c.tenant_id = Some(tenant_of(tenant));
                    c.kind = Some(kind.into());
                });
                if matches!(action, Action::Enable | Action::Delete) {
                    app.set_status(
                        &target.client_id,
                        keyward::service::clients::StatusChange::Disable,
                    );
                }
                let before = client_state(&app, &admin, &target.client_id);
                let got = run_console_action(&app, caller, action, &target.client_id);
                checked += 1;
                if got != want[column] {
                    failures.push(format!(
                        "{caller_name} {action:?} {role}@{tenant}: got {got}, want {}",
                        want[column]
                    ));
                }
                // A refusal changes nothing.
                if got >= 400 && client_state(&app, &admin, &target.client_id) != before {
                    failures.push(format!(
                        "{caller_name} {action:?} {role}@{tenant}: refused with {got}, yet changed"
                    ));
                }
            }
        }
    }
    // Without the CSRF token, or without a session, nothing is done.
    let Caller::Session { cookie, .. } = &callers[0].1 else {
        unreachable!()
    };
    for action in ["edit", "disable", "revoke", "secret", "delete"] {
        let (target, _) = app.new_client("uploader", |_| {});
        let before = client_state(&app, &admin, &target.client_id);
        let path = format!("/console/clients/{}/{action}", target.client_id);
        let forged = console_form(&app, cookie, None, &path, &[("name", "x")]);
        let wrong = console_form(&app, cookie, Some("not-the-token"), &path, &[("name", "x")]);
        let anonymous = app
            .request("POST", &path)
            .send_form(&[("csrf_token", "x"), ("name", "x")]);
        checked += 3;
        if forged.status != 403 || wrong.status != 403 {
            failures.push(format!(
                "{action} without the CSRF token: {} and {}",
                forged.status, wrong.status
            ));
        }
        if anonymous.status != 303 || anonymous.header("location") != Some("/console/sign-in") {
            failures.push(format!("{action} without a session: {}", anonymous.status));
        }
        if client_state(&app, &admin, &target.client_id) != before {
            failures.push(format!(
                "{action} without CSRF or session changed the client"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 4 * 8 * 5 + 5 * 3);
}

#[test]
fn in_the_console_a_personal_key_is_renewed_only_by_its_person_and_the_other_pages_check_their_scopes(
) {
    let app = spawn_app();
    let admin = app.admin_token();
    custom_role(
        &app,
        &admin,
        "viewer",
        &["clients:read", "tenants:read", "users:read"],
    );
    let (_, owner_email) = new_user(&app, &admin, "admin", &app.root_tenant);
    let owner = signed_in(&app, &owner_email);
    let (_, other_email) = new_user(&app, &admin, "admin", &app.root_tenant);
    let other = signed_in(&app, &other_email);
    let viewer = signed_in(&app, &new_user(&app, &admin, "viewer", &app.root_tenant).1);
    let (
        Caller::Session {
            cookie: owner_cookie,
            csrf: owner_csrf,
        },
        Caller::Session {
            cookie: other_cookie,
            csrf: other_csrf,
        },
        Caller::Session {
            cookie: viewer_cookie,
            csrf: viewer_csrf,
        },
    ) = (&owner, &other, &viewer)
    else {
        unreachable!()
    };
    let made = console_form(
        &app,
        owner_cookie,
        Some(owner_csrf),
        "/console/profile/key-create",
        &[],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let key = app
        .request("GET", "/admin/v1/me/personal-key")
        .header("Cookie", owner_cookie)
        .send()
        .json()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Another admin: a new secret for it is refused, and not offered.
    let page = app
        .request("GET", &format!("/console/clients/{key}"))
        .header("Cookie", other_cookie)
        .send();
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/secret\""), "{}", page.body);
    assert!(page.body.contains("/disable\""), "{}", page.body);
    let before = client_state(&app, &admin, &key);
    let secret = console_form(
        &app,
        other_cookie,
        Some(other_csrf),
        &format!("/console/clients/{key}/secret"),
        &[],
    );
    assert_eq!(secret.status, 403, "{}", secret.body);
    assert_eq!(client_state(&app, &admin, &key), before);
    // ... but may disable it.
    let disabled = console_form(
        &app,
        other_cookie,
        Some(other_csrf),
        &format!("/console/clients/{key}/disable"),
        &[],
    );
    assert_eq!(disabled.status, 303);
    assert_eq!(client_state(&app, &admin, &key).unwrap().0, "disabled");

    // Each section's forms check the section's write scope.
    for (path, fields) in [
        ("/console/tenants", vec![("name", "sneaky")]),
        ("/console/device-groups", vec![("name", "sneaky")]),
        (
            "/console/roles",
            vec![("name", "sneaky"), ("scopes", "clients:read")],
        ),
        (
            "/console/users",
            vec![("email", "s@example.com"), ("name", "S"), ("role", "admin")],
        ),
        (
            "/console/clients",
            vec![("name", "sneaky"), ("role", "admin")],
        ),
        (
            "/console/trusted-issuers",
            vec![("issuer", "https://sneaky.example")],
        ),
    ] {
        let answer = console_form(&app, viewer_cookie, Some(viewer_csrf), path, &fields);
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
    }
    let listed = app.admin("GET", "/admin/v1/tenants", &admin, None).body;
    assert!(!listed.contains("sneaky"));
    let roles = app.admin("GET", "/admin/v1/roles", &admin, None).body;
    assert!(!roles.contains("sneaky"));
    let users = app.admin("GET", "/admin/v1/users", &admin, None).body;
    assert!(!users.contains("s@example.com"));
    let issuers = app
        .admin("GET", "/admin/v1/trusted-issuers", &admin, None)
        .body;
    assert!(!issuers.contains("sneaky"));
}

/// What the console offers about trusted issuers, by page and form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerAct {
    /// The list page: 200 when read, and the target's row there or not.
    List,
    /// The confirmation before a delete.
    Confirm,
    Delete,
    /// The create form, naming the target's tenant.
    Create,
}

const ISSUER_ACTS: [IssuerAct; 4] = [
    IssuerAct::List,
    IssuerAct::Confirm,
    IssuerAct::Delete,
    IssuerAct::Create,
];

/// A trusted issuer of `tenant`, made through the service (no key fetch).
fn trusted_issuer_in(app: &TestApp, tenant: &str, issuer: &str) -> String {
    use keyward::service::trusted_issuers::{self, NewTrustedIssuer};
    let actor = app.root_actor();
    app.db
        .run_here(|conn| {
            trusted_issuers::create(
                conn,
                &actor,
                NewTrustedIssuer {
                    issuer: issuer.to_string(),
                    jwks_uri: Some("https://keys.example/jwks.json".into()),
                    tenant_id: Some(tenant.to_string()),
                    description: None,
                },
            )
        })
        .unwrap_or_else(|e: keyward::service::ServiceError| panic!("trusted issuer: {e}"))
        .id
}

/// The issuers the root admin sees, by id.
fn issuer_ids(app: &TestApp, admin: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .admin("GET", "/admin/v1/trusted-issuers?limit=500", admin, None)
        .json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn escalation_matrix_for_the_console_trusted_issuers_are_read_with_tenants_read_and_changed_only_within_reach_with_tenants_write(
) {
    // The create form fetches the issuer's keys first: from loopback here.
    let app = spawn_app_with(|s| s.allow_insecure_jwks = true);
    let keys = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "k1")]);
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    custom_role(&app, &admin, "viewer", &["clients:read", "tenants:read"]);
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let tenants = [
        ("root", app.root_tenant.clone()),
        ("child", child.clone()),
        ("sibling", sibling.clone()),
    ];
    let person =
        |role: &str, tenant: &str| signed_in(&app, &new_user(&app, &admin, role, tenant).1);
    let callers = [
        ("full admin", person("admin", &app.root_tenant)),
        ("viewer", person("viewer", &app.root_tenant)),
        ("helpdesk", person("helpdesk", &app.root_tenant)),
        ("child admin", person("admin", &child)),
    ];
    // For the root, child and sibling targets: 200 a page (List: 200 with
    // the row, 1200 without it), 303 done, 403 scope, 404 out of reach.
    let expected = |caller: &str, act: IssuerAct| -> [u16; 3] {
        match (caller, act) {
            ("full admin", IssuerAct::List | IssuerAct::Confirm) => [200; 3],
            ("full admin", _) => [303; 3],
            ("viewer", IssuerAct::List) => [200; 3],
            ("viewer" | "helpdesk", _) => [403; 3],
            ("child admin", IssuerAct::List) => [1200, 200, 1200],
            ("child admin", IssuerAct::Confirm) => [404, 200, 404],
            ("child admin", _) => [404, 303, 404],
            _ => unreachable!(),
        }
    };
    let mut checked = 0;
    let mut n = 0;
    let mut failures = Vec::new();
    for (caller_name, caller) in &callers {
        let Caller::Session { cookie, csrf } = caller else {
            unreachable!("console callers are people")
        };
        for act in ISSUER_ACTS {
            let want = expected(caller_name, act);
            for (column, (tenant_name, tenant)) in tenants.iter().enumerate() {
                n += 1;
                let target =
                    trusted_issuer_in(&app, tenant, &format!("https://target-{n}.example"));
                let before = issuer_ids(&app, &admin);
                let answer = match act {
                    // Fewer than a page (50) of issuers exist when a list is
                    // read, so the target is on the first page when in reach.
                    IssuerAct::List => app
                        .request("GET", "/console/trusted-issuers")
                        .header("Cookie", cookie)
                        .header("Accept", "text/html")
                        .send(),
                    IssuerAct::Confirm => app
                        .request("GET", &format!("/console/trusted-issuers/{target}/delete"))
                        .header("Cookie", cookie)
                        .header("Accept", "text/html")
                        .send(),
                    IssuerAct::Delete => console_form(
                        &app,
                        cookie,
                        Some(csrf),
                        &format!("/console/trusted-issuers/{target}/delete"),
                        &[],
                    ),
                    IssuerAct::Create => console_form(
                        &app,
                        cookie,
                        Some(csrf),
                        "/console/trusted-issuers",
                        &[
                            ("issuer", &format!("https://made-{n}.example")),
                            ("jwks_uri", &keys.jwks_uri()),
                            ("tenant_id", tenant),
                        ],
                    ),
                };
                checked += 1;
                if answer.status != 303 {
                    assert!(
                        answer
                            .header("content-type")
                            .unwrap_or("")
                            .starts_with("text/html"),
                        "{caller_name} {act:?}: {}",
                        answer.body
                    );
                }
                let got = match act {
                    IssuerAct::List if answer.status == 200 && !answer.body.contains(&target) => {
                        1200
                    }
                    _ => answer.status,
                };
                if got != want[column] {
                    failures.push(format!(
                        "{caller_name} {act:?} @{tenant_name}: got {got}, want {}",
                        want[column]
                    ));
                }
                let after = issuer_ids(&app, &admin);
                let changed = match (act, got) {
                    (IssuerAct::Delete, 303) => {
                        after.len() + 1 != before.len() || after.contains(&target)
                    }
                    (IssuerAct::Create, 303) => after.len() != before.len() + 1,
                    // A page or a refusal changes nothing.
                    _ => after != before,
                };
                if changed {
                    failures.push(format!(
                        "{caller_name} {act:?} @{tenant_name}: answered {got}, and the issuers are {after:?} (were {before:?})"
                    ));
                }
            }
        }
    }
    // Without the CSRF token, or without a session, nothing is done.
    let Caller::Session { cookie, .. } = &callers[0].1 else {
        unreachable!()
    };
    let target = trusted_issuer_in(&app, &app.root_tenant, "https://kept.example");
    let jwks_uri = keys.jwks_uri();
    let forms: [(String, Vec<(&str, &str)>); 2] = [
        (format!("/console/trusted-issuers/{target}/delete"), vec![]),
        (
            "/console/trusted-issuers".to_string(),
            vec![
                ("issuer", "https://forged.example"),
                ("jwks_uri", &jwks_uri),
            ],
        ),
    ];
    for (path, fields) in &forms {
        let before = issuer_ids(&app, &admin);
        let forged = console_form(&app, cookie, None, path, fields);
        let wrong = console_form(&app, cookie, Some("not-the-token"), path, fields);
        let mut anonymous_fields = fields.clone();
        anonymous_fields.push(("csrf_token", "x"));
        let anonymous = app.request("POST", path).send_form(&anonymous_fields);
        checked += 3;
        if forged.status != 403 || wrong.status != 403 {
            failures.push(format!(
                "{path} without the CSRF token: {} and {}",
                forged.status, wrong.status
            ));
        }
        if anonymous.status != 303 || anonymous.header("location") != Some("/console/sign-in") {
            failures.push(format!("{path} without a session: {}", anonymous.status));
        }
        if issuer_ids(&app, &admin) != before {
            failures.push(format!(
                "{path} without CSRF or session changed the issuers"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 4 * 4 * 3 + 2 * 3);
}

// ---------------------------------------------------------------------------
// The escalation matrix for trusted issuers: tenants:read to see them,
// tenants:write to add and remove them, only within the caller's subtree.

#[test]
fn escalation_matrix_for_trusted_issuers_no_caller_acts_beyond_its_reach_and_rights() {
    use crate::helpers::{Signer, TestIssuer};
    let app = spawn_app_with(|s| s.allow_insecure_jwks = true);
    let admin = app.admin_token();
    custom_role(&app, &admin, "helpdesk", &["clients:read", "clients:write"]);
    custom_role(&app, &admin, "tenant-viewer", &["tenants:read"]);
    let child = app.create_tenant("child", None);
    let sibling = app.create_tenant("sibling", None);
    let tenants = [app.root_tenant.clone(), child.clone(), sibling.clone()];
    let key = Signer::new(jsonwebtoken::Algorithm::EdDSA, "k");
    let issuer = TestIssuer::serving(&[&key]);
    let (_, full) = client_token(&app, "admin", &app.root_tenant);
    let (_, helpdesk) = client_token(&app, "helpdesk", &app.root_tenant);
    let (_, viewer) = client_token(&app, "tenant-viewer", &app.root_tenant);
    let (_, child_admin) = client_token(&app, "admin", &child);
    let narrowed = app.token_for(&app.admin_id, &app.admin_secret, &[("tenant", &child)]);
    let callers = [
        ("full admin", &full),
        ("helpdesk", &helpdesk),
        ("viewer", &viewer),
        ("child admin", &child_admin),
        ("narrowed to child", &narrowed),
    ];
    // Expected per target tenant (root, child, sibling).
    let expected = |caller: &str, act: &str| -> [u16; 3] {
        let done = match act {
            "create" => 201,
            "delete" => 204,
            _ => 200,
        };
        match (caller, act) {
            ("full admin", _) => [done; 3],
            ("helpdesk", _) => [403; 3],
            ("viewer", "get") => [200; 3],
            ("viewer", _) => [403; 3],
            (_, _) => [404, done, 404],
        }
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut n = 0;
    for (caller, token) in callers {
        for act in ["create", "get", "delete"] {
            let want = expected(caller, act);
            for (column, tenant) in tenants.iter().enumerate() {
                // Each case its own issuer name, so creates do not collide.
                n += 1;
                let name = format!("{}/case-{n}", issuer.url);
                let got = if act == "create" {
                    app.admin(
                        "POST",
                        "/admin/v1/trusted-issuers",
                        token,
                        Some(json!({"issuer": name, "jwks_uri": issuer.jwks_uri(), "tenant_id": tenant})),
                    )
                    .status
                } else {
                    let made = app.admin(
                        "POST",
                        "/admin/v1/trusted-issuers",
                        &admin,
                        Some(json!({"issuer": name, "jwks_uri": issuer.jwks_uri(), "tenant_id": tenant})),
                    );
                    assert_eq!(made.status, 201, "{}", made.body);
                    let id = made.json()["id"].as_str().unwrap().to_string();
                    let path = format!("/admin/v1/trusted-issuers/{id}");
                    let method = if act == "get" { "GET" } else { "DELETE" };
                    app.admin(method, &path, token, None).status
                };
                checked += 1;
                if got != want[column] {
                    failures.push(format!(
                        "{caller} {act} in tenant {column}: got {got}, want {}",
                        want[column]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 5 * 3 * 3);
    // A child admin cannot point its clients at an issuer only the sibling
    // trusts, nor see that it exists.
    let sibling_only = format!("{}/sibling-only", issuer.url);
    let made = app.admin(
        "POST",
        "/admin/v1/trusted-issuers",
        &admin,
        Some(json!({"issuer": sibling_only, "jwks_uri": issuer.jwks_uri(), "tenant_id": sibling})),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &child_admin,
        Some(json!({"name": "n", "role": "reader",
                    "federated_subjects": [{"issuer": sibling_only, "subject": "s"}]})),
    );
    response.assert_error(400, "invalid_request");
}

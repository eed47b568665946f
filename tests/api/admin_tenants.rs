use serde_json::json;

use crate::helpers::spawn_app;

#[test]
fn tenants_are_created_read_renamed_and_deleted() {
    let app = spawn_app();
    let token = app.admin_token();
    let response = app.admin(
        "POST",
        "/admin/v1/tenants",
        &token,
        Some(json!({"name": "vendor", "owner_emails": ["owner@vendor.example"]})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let vendor = response.json();
    assert_eq!(
        vendor["parent_id"], app.root_tenant,
        "parent defaults to the caller's tenant"
    );
    assert_eq!(vendor["owner_emails"], json!(["owner@vendor.example"]));
    let vid = vendor["id"].as_str().unwrap();
    let sub = app
        .admin(
            "POST",
            "/admin/v1/tenants",
            &token,
            Some(json!({"name": "sub", "parent_id": vid})),
        )
        .json();
    assert_eq!(sub["parent_id"], vid);
    assert_eq!(
        app.admin("GET", &format!("/admin/v1/tenants/{vid}"), &token, None)
            .json()["name"],
        "vendor"
    );
    let renamed = app
        .admin(
            "PATCH",
            &format!("/admin/v1/tenants/{vid}"),
            &token,
            Some(json!({"name": "Vendor AG", "owner_emails": []})),
        )
        .json();
    assert_eq!(renamed["name"], "Vendor AG");
    assert_eq!(renamed["owner_emails"], json!([]));
    let listed = app
        .admin("GET", "/admin/v1/tenants?limit=2", &token, None)
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(listed["next"].is_string());
    // 409 while it has sub-tenants or clients.
    app.admin("DELETE", &format!("/admin/v1/tenants/{vid}"), &token, None)
        .assert_error(409, "conflict");
    let sid = sub["id"].as_str().unwrap();
    let (member, _) = app.new_client("reader", |c| c.tenant_id = Some(sid.to_string()));
    app.admin("DELETE", &format!("/admin/v1/tenants/{sid}"), &token, None)
        .assert_error(409, "conflict");
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/revoke", member.client_id),
        &token,
        None,
    );
    assert_eq!(
        app.admin(
            "DELETE",
            &format!("/admin/v1/clients/{}", member.client_id),
            &token,
            None
        )
        .status,
        204
    );
    assert_eq!(
        app.admin("DELETE", &format!("/admin/v1/tenants/{sid}"), &token, None)
            .status,
        204
    );
    assert_eq!(
        app.admin("DELETE", &format!("/admin/v1/tenants/{vid}"), &token, None)
            .status,
        204
    );
    app.admin("GET", &format!("/admin/v1/tenants/{vid}"), &token, None)
        .assert_error(404, "not_found");
}

#[test]
fn bad_tenant_input_is_rejected_and_a_cycle_cannot_be_made() {
    let app = spawn_app();
    let token = app.admin_token();
    for body in [
        json!({"name": ""}),
        json!({"name": "n".repeat(201)}),
        json!({"name": "x", "owner_emails": ["nope"]}),
        json!({"name": "x", "colour": 1}),
        json!({"name": 5}),
    ] {
        app.admin("POST", "/admin/v1/tenants", &token, Some(body))
            .assert_error(400, "invalid_request");
    }
    app.admin(
        "POST",
        "/admin/v1/tenants",
        &token,
        Some(json!({"name": "x", "parent_id": "tn_nope"})),
    )
    .assert_error(404, "not_found");
    let a = app.create_tenant("a", None);
    let b = app.create_tenant("b", Some(&a));
    let c = app.create_tenant("c", Some(&b));
    let cycle = app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{a}"),
        &token,
        Some(json!({"parent_id": c})),
    );
    let error = cycle.assert_error(400, "invalid_request");
    assert!(error["error_description"]
        .as_str()
        .unwrap()
        .contains("cycle"));
    app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{a}"),
        &token,
        Some(json!({"parent_id": a})),
    )
    .assert_error(400, "invalid_request");
    // A legal move re-roots the whole subtree: c's admin still reaches c, and
    // a's admin no longer reaches b's subtree.
    let d = app.create_tenant("d", None);
    let a_admin = app.tenant_admin(&a, None);
    let moved = app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{b}"),
        &token,
        Some(json!({"parent_id": d})),
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.json()["parent_id"], d);
    app.admin("GET", &format!("/admin/v1/tenants/{c}"), &a_admin, None)
        .assert_error(404, "not_found");
    let d_admin = app.tenant_admin(&d, None);
    assert_eq!(
        app.admin("GET", &format!("/admin/v1/tenants/{c}"), &d_admin, None)
            .status,
        200
    );
    app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{a}"),
        &token,
        Some(json!({"id": "tn_x"})),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn device_groups_are_per_tenant_and_cannot_go_while_used() {
    let app = spawn_app();
    let token = app.admin_token();
    let response = app.admin(
        "POST",
        "/admin/v1/device-groups",
        &token,
        Some(json!({"name": "line 4", "description": "presses"})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let group = response.json();
    assert_eq!(group["tenant_id"], app.root_tenant);
    let gid = group["id"].as_str().unwrap();
    app.admin(
        "POST",
        "/admin/v1/device-groups",
        &token,
        Some(json!({"name": "line 4"})),
    )
    .assert_error(409, "conflict");
    let other = app.create_tenant("other", None);
    let same_name = app.admin(
        "POST",
        "/admin/v1/device-groups",
        &token,
        Some(json!({"name": "line 4", "tenant_id": other})),
    );
    assert_eq!(same_name.status, 201, "names are per tenant");
    assert_eq!(
        app.admin(
            "GET",
            &format!("/admin/v1/device-groups/{gid}"),
            &token,
            None
        )
        .json()["name"],
        "line 4"
    );
    assert_eq!(
        app.admin("GET", "/admin/v1/device-groups", &token, None)
            .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A client of another tenant cannot use this group.
    app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(json!({"name": "x", "role": "reader", "tenant_id": other, "device_group_id": gid})),
    )
    .assert_error(404, "not_found");
    let client = app
        .admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "x", "role": "reader", "device_group_id": gid})),
        )
        .json();
    app.admin(
        "DELETE",
        &format!("/admin/v1/device-groups/{gid}"),
        &token,
        None,
    )
    .assert_error(409, "conflict");
    let cid = client["client_id"].as_str().unwrap();
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{cid}/disable"),
        &token,
        None,
    );
    app.admin("DELETE", &format!("/admin/v1/clients/{cid}"), &token, None);
    assert_eq!(
        app.admin(
            "DELETE",
            &format!("/admin/v1/device-groups/{gid}"),
            &token,
            None
        )
        .status,
        204
    );
    app.admin(
        "GET",
        &format!("/admin/v1/device-groups/{gid}"),
        &token,
        None,
    )
    .assert_error(404, "not_found");
    app.admin(
        "POST",
        "/admin/v1/device-groups",
        &token,
        Some(json!({"name": ""})),
    )
    .assert_error(400, "invalid_request");
}

#[test]
fn roles_list_built_in_and_custom_and_names_are_unique() {
    let app = spawn_app();
    let token = app.admin_token();
    let roles = app.admin("GET", "/admin/v1/roles", &token, None).json();
    let builtin: Vec<&str> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtin, ["admin", "reader", "resource_server", "uploader"]);
    let admin = &roles["items"][0];
    assert_eq!(admin["scopes"].as_array().unwrap().len(), 9);
    let response = app.admin(
        "POST",
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "auditor", "scopes": ["audit:read", "read"]})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["scopes"], json!(["audit:read", "read"]));
    app.admin(
        "POST",
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "auditor", "scopes": ["read"]})),
    )
    .assert_error(409, "conflict");
    app.admin(
        "POST",
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "reader", "scopes": ["read"]})),
    )
    .assert_error(409, "conflict");
    app.admin(
        "POST",
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "bad name!", "scopes": ["read"]})),
    )
    .assert_error(400, "invalid_request");
    app.admin(
        "POST",
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "empty", "scopes": []})),
    )
    .assert_error(400, "invalid_request");
    let limited = app.tenant_admin(&app.root_tenant, Some(&["tenants:write", "tenants:read"]));
    app.admin(
        "POST",
        "/admin/v1/roles",
        &limited,
        Some(json!({"name": "sneaky", "scopes": ["clients:delete"]})),
    )
    .assert_error(403, "insufficient_scope");
    // A client of the custom role gets its scopes.
    let (client, secret) = app.new_client("auditor", |_| {});
    let access = app.token_for(&client.client_id, &secret, &[]);
    assert_eq!(
        crate::helpers::jwt_parts(&access).1["scope"],
        "audit:read read"
    );
    assert_eq!(
        app.admin("GET", "/admin/v1/audit", &access, None).status,
        200
    );
}

#[test]
fn audit_records_every_change_newest_first_with_actor_target_tenant_and_ip() {
    let app = spawn_app();
    let token = app.admin_token();
    let created = app
        .admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "a", "role": "reader", "kind": "api_token", "can_renew": true})),
        )
        .json();
    let id = created["client_id"].as_str().unwrap();
    let api_token = created["token"].as_str().unwrap();
    app.admin(
        "PATCH",
        &format!("/admin/v1/clients/{id}"),
        &token,
        Some(json!({"name": "b"})),
    );
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{id}/tokens"),
        &token,
        None,
    );
    app.get(
        "/api/v1/token/renew",
        crate::helpers::Auth::Bearer(api_token),
    );
    app.admin(
        "POST",
        &format!("/admin/v1/clients/{id}/disable"),
        &token,
        None,
    );
    let events = app
        .admin("GET", &format!("/admin/v1/audit?target={id}"), &token, None)
        .json();
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "client.disable",
            "token.renew",
            "client.token.reissue",
            "client.update",
            "client.create"
        ]
    );
    let newest = &events["items"][0];
    assert_eq!(newest["actor"], app.admin_id);
    assert_eq!(newest["target"], id);
    assert_eq!(newest["tenant_id"], app.root_tenant);
    assert_eq!(newest["ip"], "127.0.0.1");
    for field in ["id", "at", "details"] {
        assert!(newest.get(field).is_some());
    }
    assert!(!events.to_string().contains(api_token));
    let only = app
        .admin("GET", "/admin/v1/audit?action=client.update", &token, None)
        .json();
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let future = app
        .admin(
            "GET",
            "/admin/v1/audit?since=2999-01-01T00:00:00Z",
            &token,
            None,
        )
        .json();
    assert!(future["items"].as_array().unwrap().is_empty());
    app.admin("GET", "/admin/v1/audit?since=yesterday", &token, None)
        .assert_error(400, "invalid_request");
    let page = app
        .admin("GET", "/admin/v1/audit?limit=2", &token, None)
        .json();
    let next = page["next"].as_str().unwrap();
    let page2 = app
        .admin(
            "GET",
            &format!("/admin/v1/audit?limit=2&after={next}"),
            &token,
            None,
        )
        .json();
    assert!(page2["items"][0]["id"].as_str().unwrap() < next);
}

/// Every (caller tenant x target tenant x endpoint) cell: inside the caller's
/// subtree it works, outside it is 404 exactly as if nothing were there.
#[test]
fn tenant_matrix_callers_reach_their_subtree_and_nothing_else() {
    let app = spawn_app();
    let root = app.root_tenant.clone();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let other = app.create_tenant("other", None);
    let tenants = [
        ("root", root.clone()),
        ("vendor", vendor.clone()),
        ("customer", customer.clone()),
        ("other", other.clone()),
    ];
    let callers = [
        ("root", app.admin_token()),
        ("vendor", app.tenant_admin(&vendor, None)),
        ("customer", app.tenant_admin(&customer, None)),
    ];
    let path_of = |name: &str| -> usize {
        ["root", "vendor", "customer", "other"]
            .iter()
            .position(|n| *n == name)
            .unwrap()
    };
    // Which tenant names each caller reaches.
    let reaches = |caller: &str, target: &str| -> bool {
        match caller {
            "root" => true,
            "vendor" => target == "vendor" || target == "customer",
            "customer" => target == "customer",
            _ => unreachable!(),
        }
    };
    let mut cells = 0;
    for (caller_name, caller_token) in &callers {
        for (target_name, target_id) in &tenants {
            let _ = path_of(target_name);
            let expect = reaches(caller_name, target_name);
            let (target_client, _) =
                app.new_client("reader", |c| c.tenant_id = Some(target_id.clone()));
            let (target_api, _) = app.new_client("reader", |c| {
                c.tenant_id = Some(target_id.clone());
                c.kind = Some("api_token".into());
            });
            let cid = &target_client.client_id;
            let aid = &target_api.client_id;
            let calls: Vec<(&str, String, Option<serde_json::Value>)> = vec![
                ("GET", format!("/admin/v1/tenants/{target_id}"), None),
                (
                    "PATCH",
                    format!("/admin/v1/tenants/{target_id}"),
                    Some(json!({"owner_emails": ["o@example.com"]})),
                ),
                (
                    "POST",
                    "/admin/v1/tenants".into(),
                    Some(json!({"name": "child", "parent_id": target_id})),
                ),
                (
                    "POST",
                    "/admin/v1/device-groups".into(),
                    Some(json!({"name": format!("g-{caller_name}"), "tenant_id": target_id})),
                ),
                (
                    "POST",
                    "/admin/v1/clients".into(),
                    Some(json!({"name": "n", "role": "reader", "tenant_id": target_id})),
                ),
                ("GET", format!("/admin/v1/clients/{cid}"), None),
                (
                    "PATCH",
                    format!("/admin/v1/clients/{cid}"),
                    Some(json!({"owner": "x"})),
                ),
                ("POST", format!("/admin/v1/clients/{cid}/disable"), None),
                ("POST", format!("/admin/v1/clients/{cid}/enable"), None),
                ("POST", format!("/admin/v1/clients/{cid}/secret"), None),
                ("POST", format!("/admin/v1/clients/{aid}/tokens"), None),
                ("GET", format!("/admin/v1/clients/{aid}/tokens"), None),
                ("POST", format!("/admin/v1/clients/{cid}/revoke"), None),
                ("DELETE", format!("/admin/v1/clients/{cid}"), None),
            ];
            for (method, path, body) in calls {
                let response = app.admin(method, &path, caller_token, body);
                cells += 1;
                if expect {
                    assert!(
                        (200..300).contains(&response.status),
                        "{caller_name} -> {target_name}: {method} {path}: {}",
                        response.body
                    );
                } else {
                    response.assert_error(404, "not_found");
                }
            }
            // Lists never show what is out of reach.
            let listed = app
                .admin(
                    "GET",
                    &format!("/admin/v1/clients?status=all&tenant_id={target_id}"),
                    caller_token,
                    None,
                )
                .json();
            assert_eq!(
                !listed["items"].as_array().unwrap().is_empty(),
                expect,
                "{caller_name} lists {target_name}"
            );
            let tenants_list = app
                .admin("GET", "/admin/v1/tenants?limit=500", caller_token, None)
                .json();
            let visible = tenants_list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["id"] == target_id.as_str());
            assert_eq!(visible, expect, "{caller_name} sees tenant {target_name}");
            cells += 2;
        }
    }
    assert!(cells >= 3 * 4 * 16);
}

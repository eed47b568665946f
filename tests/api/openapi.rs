use crate::helpers::{spawn_app, Auth};

#[test]
fn every_routed_path_is_documented_and_every_documented_operation_is_routed() {
    let app = spawn_app();
    let response = app.get("/openapi.json", Auth::None);
    assert_eq!(response.status, 200);
    let doc = response.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // The route table, as the server registers it: each path and method is
    // in the served document.
    let routed = keyward::http::table().routed();
    assert!(routed.len() >= 20, "{} paths routed", routed.len());
    for (path, methods) in &routed {
        for method in methods {
            assert!(
                paths
                    .get(path)
                    .is_some_and(|p| p.get(method.to_ascii_lowercase()).is_some()),
                "{method} {path} is routed but not documented"
            );
        }
    }
    // And the other way, over HTTP: every documented operation answers
    // something other than 404 or 405.
    let mut checked = 0;
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            if !["get", "post", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path.replace("{id}", "x").replace("{name}", "x");
            let response = match method.as_str() {
                "get" => app.get(&concrete, Auth::None),
                other => app.admin(&other.to_uppercase(), &concrete, "not-a-token", None),
            };
            assert!(
                response.status != 404 && response.status != 405,
                "{method} {path} is documented but not routed: {}",
                response.status
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
    let create = &paths["/admin/v1/clients"]["post"];
    assert_eq!(create["security"][0]["bearer"][0], "clients:write");
    assert!(doc["components"]["schemas"]["ClientView"]["properties"]["client_id"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn every_admin_operation_documents_the_scope_its_handler_checks() {
    let app = spawn_app();
    let doc = app.get("/openapi.json", Auth::None).json();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/admin/v1/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            // The caller itself: any signed-in caller, no scope (API.md 4).
            if path.starts_with("/admin/v1/me") {
                assert_eq!(
                    operation["security"].as_array().map(|s| s.iter().all(|r| {
                        r.as_object()
                            .unwrap()
                            .values()
                            .all(|v| v.as_array().unwrap().is_empty())
                    })),
                    Some(true),
                    "{method} {path} needs no scope"
                );
                continue;
            }
            let scopes = operation["security"][0]["bearer"].as_array();
            let scope = scopes
                .and_then(|s| s.first())
                .and_then(|s| s.as_str())
                .unwrap_or_else(|| panic!("{method} {path} documents no scope"));
            // A token with every admin scope but this one is refused with
            // 403 naming it: the handler checks the scope the document says.
            let others: Vec<&str> = keyward::service::scopes::ADMIN_SCOPES
                .iter()
                .copied()
                .filter(|s| *s != scope)
                .collect();
            let narrowed = app.token_for(
                &app.admin_id,
                &app.admin_secret,
                &[("scope", &others.join(" "))],
            );
            let concrete = path.replace("{id}", "x").replace("{name}", "x");
            let response = app.admin(&method.to_uppercase(), &concrete, &narrowed, None);
            let error = response.assert_error(403, "insufficient_scope");
            assert!(
                error["error_description"].as_str().unwrap().contains(scope),
                "{method} {path}: {}",
                response.body
            );
            operations += 1;
        }
    }
    assert!(operations >= 24, "{operations}");
}

#[test]
fn a_wrong_method_on_an_admin_path_answers_405_with_allow_naming_its_methods() {
    let app = spawn_app();
    let token = app.admin_token();
    for (method, path, allow) in [
        ("PUT", "/admin/v1/clients", "GET, POST"),
        ("DELETE", "/admin/v1/clients", "GET, POST"),
        ("POST", "/admin/v1/clients/kwc_x", "GET, PATCH, DELETE"),
        ("GET", "/admin/v1/clients/kwc_x/disable", "POST"),
        ("PATCH", "/admin/v1/clients/kwc_x/tokens", "GET, POST"),
        ("GET", "/admin/v1/roles/reader", "PATCH, DELETE"),
        ("TRACE", "/admin/v1/audit", "GET"),
        ("OPTIONS", "/admin/v1/tenants/t", "GET, PATCH, DELETE"),
    ] {
        let response = app.admin(method, path, &token, None);
        response.assert_error(405, "invalid_request");
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
    }
    // Outside the admin API too, and unknown paths stay 404.
    let response = app.admin("DELETE", "/.well-known/jwks.json", &token, None);
    response.assert_error(405, "invalid_request");
    assert_eq!(response.header("allow"), Some("GET"));
    let response = app.get("/oauth/token", Auth::None);
    assert_eq!(response.header("allow"), Some("POST"));
    app.admin("PUT", "/admin/v1/no-such-thing", &token, None)
        .assert_error(404, "not_found");
    app.admin("GET", "/admin/v1/clients/kwc_x/nothing", &token, None)
        .assert_error(404, "not_found");
}

#[test]
fn every_list_endpoint_declares_limit_from_1_to_500() {
    let app = spawn_app();
    let doc = app.get("/openapi.json", Auth::None).json();
    let mut lists = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let Some(get) = operations.get("get") else {
            continue;
        };
        let response = &get["responses"]["200"]["content"]["application/json"]["schema"];
        let Some(reference) = response["$ref"].as_str() else {
            continue;
        };
        if !reference.starts_with("#/components/schemas/Page_") {
            continue;
        }
        lists += 1;
        let limit = get["parameters"]
            .as_array()
            .and_then(|params| params.iter().find(|p| p["name"] == "limit"))
            .unwrap_or_else(|| panic!("GET {path} has no limit"));
        assert_eq!(limit["in"], "query", "GET {path}");
        assert_eq!(limit["schema"]["minimum"], 1, "GET {path}");
        assert_eq!(limit["schema"]["maximum"], 500, "GET {path}");
    }
    // clients, tenants, device groups, roles, a client's tokens, audit.
    assert!(lists >= 6, "{lists} list endpoints found");
}

#[test]
fn a_nul_character_in_admin_input_is_invalid_request_on_every_store() {
    let app = spawn_app();
    let token = app.admin_token();
    // PostgreSQL text cannot hold U+0000: this was a 500 there.
    app.admin("GET", "/admin/v1/tenants?after=%00", &token, None)
        .assert_error(400, "invalid_request");
    app.admin(
        "POST",
        "/admin/v1/tenants",
        &token,
        Some(serde_json::json!({"name": "plant", "parent_id": "tn_\u{0}"})),
    )
    .assert_error(400, "invalid_request");
    let response = app.admin("GET", "/admin/v1/tenants/tn_%00", &token, None);
    assert!(
        [400, 404].contains(&response.status),
        "{}: {}",
        response.status,
        response.body
    );
}

#[test]
fn admin_input_that_the_document_calls_valid_is_taken_and_what_it_calls_invalid_is_refused() {
    let app = spawn_app();
    let token = app.admin_token();
    // 3600.0 is an integer to JSON Schema; serde alone refused it.
    let created = app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(serde_json::json!({"name": "float", "role": "reader", "access_token_ttl": 3600.0})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["client_id"].as_str().unwrap().to_string();
    assert_eq!(created.json()["access_token_ttl"], 3600);
    // An optional body may be `null`.
    let response = app.admin(
        "POST",
        &format!("/admin/v1/clients/{id}/secret"),
        &token,
        Some(serde_json::Value::Null),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    // A mistyped filter or an empty limit is an error, not an empty page.
    app.admin("GET", "/admin/v1/clients?kind=robot", &token, None)
        .assert_error(400, "invalid_request");
    app.admin("GET", "/admin/v1/clients?limit=", &token, None)
        .assert_error(400, "invalid_request");
    // An empty filter is no filter.
    let response = app.admin("GET", "/admin/v1/clients?kind=", &token, None);
    assert_eq!(response.status, 200, "{}", response.body);
}

#[test]
fn an_answer_that_breaks_its_documented_schema_is_caught_by_the_request_helper() {
    use crate::helpers::schema::check;
    let doc: serde_json::Value =
        serde_json::from_str(keyward::http::openapi::document_text()).unwrap();
    let json = "application/json";
    // A page whose item lacks the client's fields.
    let bad_page = r#"{"items": [{"client_id": "kwc_x"}], "next": null}"#;
    let error = check(
        &doc,
        "GET",
        "/admin/v1/clients?limit=5",
        200,
        json,
        bad_page,
    )
    .unwrap_err();
    assert!(error.contains("$.items[0]"), "{error}");
    // An introspection answer with a number for `active`.
    assert!(check(
        &doc,
        "POST",
        "/oauth/introspect",
        200,
        json,
        r#"{"active": 1}"#
    )
    .is_err());
    assert!(check(
        &doc,
        "POST",
        "/oauth/introspect",
        200,
        json,
        r#"{"active": false}"#
    )
    .is_ok());
    // A status no admin operation documents.
    let error = check(&doc, "GET", "/admin/v1/clients/kwc_x", 418, json, "{}").unwrap_err();
    assert!(error.contains("418"), "{error}");
}

use crate::helpers::{jwt_parts, spawn_app, Auth};
use crate::renew::{renewable, renewed, revoke};

#[test]
fn a_client_revokes_its_own_access_token_and_it_is_inactive_at_once() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    let other = app.token_for(&client.client_id, &secret, &[]);
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&client.client_id, &secret),
    );
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
    assert_eq!(
        app.introspect(&other)["active"],
        true,
        "only that jti is revoked"
    );
    // Again: still 200.
    let again = app.post_form(
        "/oauth/revoke",
        &[("token", &token), ("token_type_hint", "access_token")],
        Auth::Basic(&client.client_id, &secret),
    );
    assert_eq!(again.status, 200);
}

#[test]
fn an_api_token_can_revoke_itself_by_bearer() {
    let app = spawn_app();
    let (_, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", &api_token)],
        Auth::Bearer(&api_token),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        app.introspect(&api_token),
        serde_json::json!({"active": false})
    );
}

#[test]
fn unknown_and_malformed_tokens_answer_200_with_an_empty_body() {
    let app = spawn_app();
    for token in ["garbage", "kwt_nope", "a.b.c"] {
        let response = app.post_form(
            "/oauth/revoke",
            &[("token", token)],
            Auth::Basic(&app.admin_id, &app.admin_secret),
        );
        assert_eq!(response.status, 200);
        assert!(response.body.is_empty());
    }
}

#[test]
fn revoking_another_clients_token_needs_clients_write_within_the_subtree() {
    let app = spawn_app();
    let (owner, owner_secret) = app.new_client("reader", |_| {});
    let (peer, peer_secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&owner.client_id, &owner_secret, &[]);
    app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&peer.client_id, &peer_secret),
    )
    .assert_error(400, "unauthorized_client");
    assert_eq!(app.introspect(&token)["active"], true);

    // A tenant admin below cannot touch a token above it: answered as unknown.
    let sub = app.create_tenant("sub", None);
    let (sub_admin, sub_secret) = app.new_client("admin", |c| c.tenant_id = Some(sub.clone()));
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&sub_admin.client_id, &sub_secret),
    );
    assert_eq!(response.status, 200);
    assert_eq!(app.introspect(&token)["active"], true);

    // The root admin, holding clients:write, can.
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(response.status, 200);
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
}

#[test]
fn revocation_needs_authentication_and_a_token_parameter() {
    let app = spawn_app();
    let token = app.admin_token();
    app.post_form("/oauth/revoke", &[("token", &token)], Auth::None)
        .assert_error(401, "invalid_client");
    app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&app.admin_id, "wrong"),
    )
    .assert_error(401, "invalid_client");
    app.post_form(
        "/oauth/revoke",
        &[],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    )
    .assert_error(400, "invalid_request");
    assert_eq!(app.introspect(&token)["active"], true);
}

#[test]
fn revocations_are_audited() {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&client.client_id, &secret),
    );
    let mut conn = app.conn();
    let actions: Vec<(String, Option<String>, String)> = audit_events::table
        .filter(audit_events::action.eq("token.revoke"))
        .select((
            audit_events::actor,
            audit_events::target,
            audit_events::details,
        ))
        .load(&mut conn)
        .unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, client.client_id);
    assert_eq!(actions[0].1.as_deref(), Some(client.client_id.as_str()));
    assert!(
        !actions[0].2.contains(&token),
        "the audit log never holds a token"
    );
}

#[test]
fn revoking_a_token_revokes_every_token_renewed_from_it_through_a_chain() {
    let app = spawn_app();
    for kind in ["access_token", "api_token"] {
        let a = renewable(&app, kind);
        let b = renewed(&app, &a);
        let c = renewed(&app, &b);
        let unrelated = renewed(&app, &renewable(&app, kind));
        revoke(&app, &a);
        for (name, token) in [("A", &a), ("B", &b), ("C", &c)] {
            assert_eq!(
                app.introspect(token),
                serde_json::json!({"active": false}),
                "{kind} {name}"
            );
            app.get("/api/v1/token/renew", Auth::Bearer(token))
                .assert_error(401, "invalid_token");
        }
        assert_eq!(app.introspect(&unrelated)["active"], true, "{kind}");
    }
}

#[test]
fn revoking_a_renewed_token_leaves_the_token_it_was_renewed_from_active() {
    let app = spawn_app();
    for kind in ["access_token", "api_token"] {
        let a = renewable(&app, kind);
        let b = renewed(&app, &a);
        let c = renewed(&app, &b);
        revoke(&app, &b);
        assert_eq!(app.introspect(&b)["active"], false, "{kind} B");
        assert_eq!(app.introspect(&c)["active"], false, "{kind} C");
        assert_eq!(app.introspect(&a)["active"], true, "{kind} A");
        // A can still be renewed, and its new successor lives.
        let d = renewed(&app, &a);
        assert_eq!(app.introspect(&d)["active"], true, "{kind} D");
    }
}

#[test]
fn revoking_a_chain_is_one_audited_revocation_naming_the_tokens_it_reached() {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    let app = spawn_app();
    let a = renewable(&app, "access_token");
    let b = renewed(&app, &a);
    let c = renewed(&app, &b);
    revoke(&app, &a);
    let mut conn = app.conn();
    let details: Vec<String> = audit_events::table
        .filter(audit_events::action.eq("token.revoke"))
        .select(audit_events::details)
        .load(&mut conn)
        .unwrap();
    assert_eq!(details.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&details[0]).unwrap();
    let mut reached: Vec<String> =
        serde_json::from_value(details["renewed_tokens_revoked"].clone()).unwrap();
    reached.sort();
    let mut expected: Vec<String> = [&b, &c]
        .iter()
        .map(|t| jwt_parts(t).1["jti"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(reached, expected);
}

#[test]
fn revoking_a_token_and_its_successor_at_once_succeeds_for_both() {
    let app = spawn_app();
    for kind in ["access_token", "api_token"] {
        for round in 0..10 {
            let a = renewable(&app, kind);
            let b = renewed(&app, &a);
            let c = renewed(&app, &b);
            let _sibling = renewed(&app, &a);
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                for token in [&a, &b] {
                    let barrier = &barrier;
                    let app = &app;
                    s.spawn(move || {
                        barrier.wait();
                        revoke(app, token);
                    });
                }
            });
            for token in [&a, &b, &c] {
                assert_eq!(app.introspect(token)["active"], false, "{kind} {round}");
            }
        }
    }
}

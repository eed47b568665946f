//! `keyward keys remove`: a key leaves the JWKS, and every token it signed is
//! inactive at once, cached or not. Key changes made with the CLI are audited.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, Auth, CliRunner, TestApp};

fn audited(app: &TestApp, action: &str) -> Vec<(String, Option<String>, String)> {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events as a;
    let mut conn = app.conn();
    a::table
        .filter(a::action.eq(action))
        .select((a::actor, a::target, a::details))
        .load(&mut conn)
        .unwrap()
}

fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.get("/.well-known/jwks.json", Auth::None).json();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_token_whose_key_was_removed_is_inactive_at_once() {
    let app = spawn_app();
    let token = app.admin_token();
    let old_kid = crate::helpers::jwt_parts(&token).0["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = CliRunner::for_app(&app).json(&["keys", "rotate", "--json"]);
    let new_kid = rotated["signing_kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    // Still published: the token works, and is now in the verified cache.
    assert_eq!(app.introspect(&token)["active"], true);
    assert_eq!(
        app.admin("GET", "/admin/v1/clients", &token, None).status,
        200
    );
    let removed = CliRunner::for_app(&app).run(&["keys", "remove", &old_kid]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    // On PostgreSQL the NOTIFY arrives in milliseconds; on SQLite the server
    // looks at the keys directory at most every 100 ms.
    let deadline = Instant::now() + Duration::from_millis(300);
    while app.introspect(&token)["active"] != false {
        assert!(Instant::now() < deadline, "the removed key still verifies");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(app.introspect(&token), serde_json::json!({"active": false}));
    app.admin("GET", "/admin/v1/clients", &token, None)
        .assert_error(401, "invalid_token");
    assert_eq!(jwks_kids(&app), vec![new_kid.clone()]);
    // A token of the signing key is unaffected.
    let fresh = app.admin_token();
    assert_eq!(app.introspect(&fresh)["active"], true);
    let events = audited(&app, "key.remove");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "cli");
    assert_eq!(events[0].1.as_deref(), Some(old_kid.as_str()));
    assert!(events[0].2.contains(&old_kid));
    let rotations = audited(&app, "key.rotate");
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0].0, "cli");
    assert_eq!(rotations[0].1.as_deref(), Some(new_kid.as_str()));
}

#[test]
fn removing_the_signing_key_or_an_unknown_kid_fails_with_the_reason_on_stderr() {
    let app = spawn_app();
    let token = app.admin_token();
    let signing = crate::helpers::jwt_parts(&token).0["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = CliRunner::for_app(&app).run(&["keys", "remove", &signing]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("signing key") && stderr.contains("rotate"),
        "{stderr}"
    );
    let unknown = CliRunner::for_app(&app).run(&["keys", "remove", "no-such-kid"]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no-such-kid"), "{stderr}");
    // Nothing changed, and nothing was audited.
    assert_eq!(jwks_kids(&app), vec![signing]);
    assert_eq!(app.introspect(&token)["active"], true);
    assert!(audited(&app, "key.remove").is_empty());
}

#[test]
fn generating_a_key_with_the_cli_is_audited() {
    let app = spawn_app();
    for file in std::fs::read_dir(app.keys_dir()).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    let generated = CliRunner::for_app(&app).json(&["keys", "generate", "--json"]);
    assert_eq!(generated["created"], true);
    let events = audited(&app, "key.generate");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "cli");
    assert_eq!(events[0].1.as_deref(), generated["kid"].as_str());
}

//! Console sessions over HTTP (API.md section 4, "Sessions"): sign-in, the
//! cookie at the admin API with its CSRF token, and every way a session
//! ends.

use crate::helpers::{spawn_app, TestApp};

const PASSWORD: &str = "correct horse battery";

/// A user made through the admin API (bearer), with a password.
fn user(app: &TestApp, admin: &str, email: &str, role: &str) -> String {
    let created = app
        .request("POST", "/admin/v1/users")
        .bearer(admin)
        .send_json(serde_json::json!({
            "email": email, "name": "A Person", "role": role, "password": PASSWORD
        }));
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.json().get("setup_url").is_none());
    created.json()["user_id"].as_str().unwrap().to_string()
}

/// Signs in; the cookie header to send back (`keyward_session=...`).
fn sign_in(app: &TestApp, email: &str, password: &str) -> String {
    let answer = app
        .request("POST", "/console/sign-in")
        .send_form(&[("email", email), ("password", password)]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/console"));
    let set = answer.header("set-cookie").expect("a session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    // The test server's issuer is http://: a Secure cookie would never come back.
    assert!(!set.contains("Secure"), "{set}");
    set.split(';').next().unwrap().to_string()
}

fn me(app: &TestApp, cookie: &str) -> crate::helpers::TestResponse {
    app.request("GET", "/admin/v1/me")
        .header("Cookie", cookie)
        .send()
}

#[test]
fn a_person_signs_in_and_acts_in_the_admin_api_with_the_cookie_and_its_csrf_token() {
    let app = spawn_app();
    let admin = app.admin_token();
    user(&app, &admin, "Ada@Example.com", "admin");
    let cookie = sign_in(&app, "ada@example.com", PASSWORD);

    let who = me(&app, &cookie);
    assert_eq!(who.status, 200, "{}", who.body);
    let body = who.json();
    assert_eq!(body["user"]["email"], "Ada@Example.com");
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    assert!(csrf.len() >= 32);
    assert!(body.get("client").is_none());

    // Reads need no CSRF token; changes do, and a wrong one is refused.
    let list = app
        .request("GET", "/admin/v1/clients")
        .header("Cookie", &cookie)
        .send();
    assert_eq!(list.status, 200, "{}", list.body);
    let new_client = serde_json::json!({"name": "from the console", "role": "reader"});
    app.request("POST", "/admin/v1/clients")
        .header("Cookie", &cookie)
        .send_json(new_client.clone())
        .assert_error(403, "invalid_request");
    app.request("POST", "/admin/v1/clients")
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", "not-the-token")
        .send_json(new_client.clone())
        .assert_error(403, "invalid_request");
    let made = app
        .request("POST", "/admin/v1/clients")
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send_json(new_client.clone());
    assert_eq!(made.status, 201, "{}", made.body);
    // The audit log says who: the person, not a client.
    let events = app
        .request("GET", "/admin/v1/audit?action=client.create")
        .bearer(&admin)
        .send()
        .json();
    let user_id = body["user"]["user_id"].as_str().unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == user_id),
        "{events}"
    );

    // Bearer callers need no CSRF token, and /me names their client.
    let bearer_made = app
        .request("POST", "/admin/v1/clients")
        .bearer(&admin)
        .send_json(new_client);
    assert_eq!(bearer_made.status, 201, "{}", bearer_made.body);
    let client_me = app.request("GET", "/admin/v1/me").bearer(&admin).send();
    assert_eq!(client_me.status, 200, "{}", client_me.body);
    assert_eq!(
        client_me.json()["client"]["client_id"],
        app.admin_id.as_str()
    );
    assert_eq!(client_me.json()["client"]["name"], "bootstrap admin");
}

#[test]
fn a_wrong_password_an_unknown_email_and_a_disabled_user_get_the_same_401_and_no_cookie() {
    let app = spawn_app();
    let admin = app.admin_token();
    let id = user(&app, &admin, "grace@example.com", "reader");
    let disable = app
        .request("PATCH", &format!("/admin/v1/users/{id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "disabled"}));
    assert_eq!(disable.status, 200, "{}", disable.body);
    let mut bodies = Vec::new();
    for (email, password) in [
        ("grace@example.com", PASSWORD),
        ("grace@example.com", "wrong password 123"),
        ("nobody@example.com", PASSWORD),
    ] {
        let answer = app
            .request("POST", "/console/sign-in")
            .send_form(&[("email", email), ("password", password)]);
        answer.assert_error(401, "access_denied");
        assert!(answer.header("set-cookie").is_none());
        bodies.push(answer.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[test]
fn a_reader_sees_but_cannot_change_and_cannot_make_users() {
    let app = spawn_app();
    let admin = app.admin_token();
    user(&app, &admin, "reader@example.com", "reader");
    let cookie = sign_in(&app, "reader@example.com", PASSWORD);
    let csrf = me(&app, &cookie).json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.request("POST", "/admin/v1/users")
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send_json(serde_json::json!({"email": "x@example.com", "name": "X", "role": "admin"}))
        .assert_error(403, "insufficient_scope");
    app.request("POST", "/admin/v1/clients")
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send_json(serde_json::json!({"name": "n", "role": "reader"}))
        .assert_error(403, "insufficient_scope");
}

#[test]
fn disabling_the_user_a_role_change_and_sign_out_each_end_the_session_at_once() {
    let app = spawn_app();
    let admin = app.admin_token();
    let id = user(&app, &admin, "lin@example.com", "reader");

    let cookie = sign_in(&app, "lin@example.com", PASSWORD);
    assert_eq!(me(&app, &cookie).status, 200);
    app.request("PATCH", &format!("/admin/v1/users/{id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"role": "admin"}));
    me(&app, &cookie).assert_error(401, "invalid_token");

    let cookie = sign_in(&app, "lin@example.com", PASSWORD);
    app.request("PATCH", &format!("/admin/v1/users/{id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "disabled"}));
    me(&app, &cookie).assert_error(401, "invalid_token");
    app.request("PATCH", &format!("/admin/v1/users/{id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "active"}));

    let cookie = sign_in(&app, "lin@example.com", PASSWORD);
    let csrf = me(&app, &cookie).json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Sign-out is a change: without the form's csrf_token it is refused.
    app.request("POST", "/console/sign-out")
        .header("Cookie", &cookie)
        .send_form(&[])
        .assert_error(403, "invalid_request");
    let out = app
        .request("POST", "/console/sign-out")
        .header("Cookie", &cookie)
        .send_form(&[("csrf_token", &csrf)]);
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    me(&app, &cookie).assert_error(401, "invalid_token");
}

#[test]
fn a_password_change_ends_the_other_sessions_and_keeps_this_one() {
    let app = spawn_app();
    let admin = app.admin_token();
    user(&app, &admin, "kim@example.com", "reader");
    let here = sign_in(&app, "kim@example.com", PASSWORD);
    let elsewhere = sign_in(&app, "kim@example.com", PASSWORD);
    let csrf = me(&app, &here).json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_password = "a much longer new password";
    app.request("POST", "/admin/v1/me/password")
        .header("Cookie", &here)
        .header("X-CSRF-Token", &csrf)
        .send_json(
            serde_json::json!({"current_password": "not it at all", "new_password": new_password}),
        )
        .assert_error(400, "invalid_request");
    let changed = app
        .request("POST", "/admin/v1/me/password")
        .header("Cookie", &here)
        .header("X-CSRF-Token", &csrf)
        .send_json(serde_json::json!({"current_password": PASSWORD, "new_password": new_password}));
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(me(&app, &here).status, 200);
    me(&app, &elsewhere).assert_error(401, "invalid_token");
    sign_in(&app, "kim@example.com", new_password);
    // A client has no password to change.
    app.request("POST", "/admin/v1/me/password")
        .bearer(&admin)
        .send_json(serde_json::json!({"current_password": "x", "new_password": new_password}))
        .assert_error(403, "access_denied");
}

#[test]
fn a_setup_link_sets_the_first_password_once() {
    let app = spawn_app();
    let admin = app.admin_token();
    let created = app
        .request("POST", "/admin/v1/users")
        .bearer(&admin)
        .send_json(
            serde_json::json!({"email": "new@example.com", "name": "New", "role": "reader"}),
        );
    assert_eq!(created.status, 201, "{}", created.body);
    let url = created.json()["setup_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&app.url("/console/setup?token=")), "{url}");
    let token = url.split("token=").nth(1).unwrap().to_string();
    let set = app
        .request("POST", "/console/setup")
        .send_form(&[("token", &token), ("password", PASSWORD)]);
    assert_eq!(set.status, 303, "{}", set.body);
    sign_in(&app, "new@example.com", PASSWORD);
    app.request("POST", "/console/setup")
        .send_form(&[("token", &token), ("password", "another password 1")])
        .assert_error(404, "not_found");
}

#[test]
fn a_session_ended_on_one_node_is_refused_by_every_node() {
    let Some(schema) =
        crate::helpers::postgres_or_skip("a_session_ended_on_one_node_is_refused_by_every_node")
            .map(|pg| pg.schema())
    else {
        return;
    };
    let nodes: Vec<TestApp> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let mut settings = crate::helpers::test_settings(dir.path(), schema.url());
            settings.issuer = Some("http://auth.cluster.test".into());
            crate::helpers::start(settings, dir, None)
        })
        .collect();
    let (one, two) = (&nodes[0], &nodes[1]);
    let admin = one.admin_token();
    let id = user(one, &admin, "both@example.com", "reader");
    let cookie = sign_in(one, "both@example.com", PASSWORD);
    assert_eq!(
        me(two, &cookie).status,
        200,
        "the other node honours the session"
    );
    let disabled = one
        .request("PATCH", &format!("/admin/v1/users/{id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "disabled"}));
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    me(two, &cookie).assert_error(401, "invalid_token");
    me(one, &cookie).assert_error(401, "invalid_token");
}

/// A signed-in person's cookie and CSRF token.
fn session(app: &TestApp, email: &str) -> (String, String) {
    let cookie = sign_in(app, email, PASSWORD);
    let csrf = me(app, &cookie).json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

fn as_person(
    app: &TestApp,
    (cookie, csrf): &(String, String),
    method: &str,
    path: &str,
) -> crate::helpers::Request {
    app.request(method, path)
        .header("Cookie", cookie)
        .header("X-CSRF-Token", csrf)
}

fn token_status(app: &TestApp, id: &str, secret: &str) -> u16 {
    app.post_form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        crate::helpers::Auth::Basic(id, secret),
    )
    .status
}

#[test]
fn a_personal_key_is_its_persons_alone_and_follows_the_persons_role_and_status() {
    let app = spawn_app();
    let admin = app.admin_token();
    let user_id = user(&app, &admin, "pat@example.com", "reader");
    let person = session(&app, "pat@example.com");
    let path = "/admin/v1/me/personal-key";

    as_person(&app, &person, "GET", path)
        .send()
        .assert_error(404, "not_found");
    let made = as_person(&app, &person, "POST", path).send_json(serde_json::json!({}));
    assert_eq!(made.status, 201, "{}", made.body);
    let key = made.json();
    let (id, secret) = (
        key["client_id"].as_str().unwrap().to_string(),
        key["client_secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(key["user_id"], user_id.as_str());
    assert_eq!(key["role"], "reader");
    assert!(key["expires_at"].is_null());
    as_person(&app, &person, "POST", path)
        .send_json(serde_json::json!({}))
        .assert_error(409, "conflict");
    assert_eq!(token_status(&app, &id, &secret), 200);

    // Other admins see that it exists, may not hold its secret.
    let listed = app
        .request("GET", &format!("/admin/v1/clients?user_id={user_id}"))
        .bearer(&admin)
        .send();
    assert_eq!(listed.json()["items"][0]["client_id"], id.as_str());
    app.request("POST", &format!("/admin/v1/clients/{id}/secret"))
        .bearer(&admin)
        .send()
        .assert_error(403, "insufficient_scope");

    // The person's role is the key's, at once: a token issued under the old
    // role stops, new ones carry the new role.
    let reader_token = app.token_for(&id, &secret, &[]);
    assert_eq!(app.introspect(&reader_token)["active"], true);
    let promoted = app
        .request("PATCH", &format!("/admin/v1/users/{user_id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"role": "admin"}));
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    let shown = app
        .request("GET", &format!("/admin/v1/clients/{id}"))
        .bearer(&admin)
        .send()
        .json();
    assert_eq!(shown["role"], "admin");
    assert_eq!(app.introspect(&reader_token)["active"], false);
    let token = app.token_for(&id, &secret, &[]);
    assert_eq!(app.introspect(&token)["role"], "admin");

    // Disabling the person stops the key and its tokens at once.
    app.request("PATCH", &format!("/admin/v1/users/{user_id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "disabled"}));
    assert_eq!(token_status(&app, &id, &secret), 401);
    assert_eq!(app.introspect(&token)["active"], false);
    app.request("PATCH", &format!("/admin/v1/users/{user_id}"))
        .bearer(&admin)
        .send_json(serde_json::json!({"status": "active"}));
    assert_eq!(token_status(&app, &id, &secret), 200);

    // A new secret stops the old one at once; deleting stops the key.
    let person = session(&app, "pat@example.com");
    let renewed = as_person(&app, &person, "POST", &format!("{path}/secret")).send();
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let new_secret = renewed.json()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token_status(&app, &id, &secret), 401);
    assert_eq!(token_status(&app, &id, &new_secret), 200);
    let deleted = as_person(&app, &person, "DELETE", path).send();
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(token_status(&app, &id, &new_secret), 401);
    as_person(&app, &person, "GET", path)
        .send()
        .assert_error(404, "not_found");

    // A client has no personal key.
    app.request("GET", path)
        .bearer(&admin)
        .send()
        .assert_error(403, "access_denied");
}

#[test]
fn an_admin_may_disable_or_delete_a_personal_key_even_while_active() {
    let app = spawn_app();
    let admin = app.admin_token();
    user(&app, &admin, "sam@example.com", "reader");
    let person = session(&app, "sam@example.com");
    let made = as_person(&app, &person, "POST", "/admin/v1/me/personal-key")
        .send_json(serde_json::json!({"expires_in": "7d"}));
    assert_eq!(made.status, 201, "{}", made.body);
    assert!(made.json()["expires_at"].is_string());
    let id = made.json()["client_id"].as_str().unwrap().to_string();
    let secret = made.json()["client_secret"].as_str().unwrap().to_string();
    let deleted = app
        .request("DELETE", &format!("/admin/v1/clients/{id}"))
        .bearer(&admin)
        .send();
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(token_status(&app, &id, &secret), 401);
}

//! The console's pages over HTTP (API.md section 4, "The console"): what a
//! browser gets, headers included. How they look is checked by eye, with
//! the screenshots in docs/console/.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Signer, TestApp, TestIssuer, TestResponse};

const PASSWORD: &str = "correct horse battery";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn person(app: &TestApp, admin: &str, email: &str, name: &str, role: &str) {
    let created = app.admin(
        "POST",
        "/admin/v1/users",
        admin,
        Some(json!({"email": email, "name": name, "role": role, "password": PASSWORD})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
}

/// The cookie header to send back.
fn sign_in(app: &TestApp, email: &str) -> String {
    let answer = app
        .request("POST", "/console/sign-in")
        .header("Accept", BROWSER_ACCEPT)
        .send_form(&[("email", email), ("password", PASSWORD)]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_console_headers(&answer);
    let set = answer.header("set-cookie").expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

fn page(app: &TestApp, path: &str, cookie: &str) -> TestResponse {
    app.request("GET", path)
        .header("Cookie", cookie)
        .header("Accept", BROWSER_ACCEPT)
        .send()
}

fn client(app: &TestApp, admin: &str, body: serde_json::Value) -> String {
    let made = app.admin("POST", "/admin/v1/clients", admin, Some(body));
    assert_eq!(made.status, 201, "{}", made.body);
    made.json()["client_id"].as_str().unwrap().to_string()
}

fn assert_console_headers(answer: &TestResponse) {
    assert_eq!(answer.header("content-security-policy"), Some(CSP));
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

/// A page the CSP lets through whole: no inline script or style.
fn assert_page(answer: &TestResponse) {
    assert_console_headers(answer);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        answer.headers
    );
    let body = &answer.body;
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(body.contains(r#"<html lang="en">"#), "{body}");
    assert!(body.contains(r##"href="#main""##), "a skip link: {body}");
    assert!(
        body.contains(r#"href="/console/assets/console.css""#),
        "{body}"
    );
    // One script, from the binary; none inline.
    assert_eq!(
        body.matches("<script").count(),
        body.matches(r#"<script src="/console/assets/console.js" defer></script>"#)
            .count(),
        "{body}"
    );
    assert!(!body.contains("style="), "{body}");
    assert!(!body.contains("<style"), "{body}");
}

/// The rows of the clients table, one string each.
fn rows(body: &str) -> Vec<&str> {
    body.split("<tr").skip(2).collect()
}

#[test]
fn the_sign_in_page_is_a_form_posting_to_sign_in_with_the_console_headers() {
    let app = spawn_app();
    let answer = app.request("GET", "/console/sign-in").send();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_page(&answer);
    let body = &answer.body;
    assert!(
        body.contains(r#"<form method="post" action="/console/sign-in""#),
        "{body}"
    );
    assert!(body.contains(r#"<label for="email">"#), "{body}");
    assert!(body.contains(r#"<label for="password">"#), "{body}");
    assert!(body.contains("<h1>"), "{body}");

    let css = app.request("GET", "/console/assets/console.css").send();
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert_console_headers(&css);
    assert!(css.body.contains("@media"), "responsive");
}

#[test]
fn a_wrong_password_from_a_browser_form_shows_the_page_again_with_401_and_no_cookie() {
    let app = spawn_app();
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let answer = app
        .request("POST", "/console/sign-in")
        .header("Accept", BROWSER_ACCEPT)
        .send_form(&[
            ("email", "ada@example.com"),
            ("password", "not the password"),
        ]);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(answer.header("set-cookie").is_none());
    assert_page(&answer);
    assert!(
        answer.body.contains("Wrong email or password"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains(r#"value="ada@example.com""#),
        "the email is kept: {}",
        answer.body
    );

    // A script still gets the JSON error.
    let json = app.request("POST", "/console/sign-in").send_form(&[
        ("email", "ada@example.com"),
        ("password", "not the password"),
    ]);
    json.assert_error(401, "access_denied");
    assert!(json.header("set-cookie").is_none());
}

#[test]
fn the_console_without_a_session_redirects_to_the_sign_in_page() {
    let app = spawn_app();
    let admin = app.admin_token();
    let answer = app.request("GET", "/console").send();
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/console/sign-in"));
    assert_console_headers(&answer);
    // A session that is not one, and a bearer token, are not sessions either.
    let ended = page(&app, "/console", "keyward_session=not-a-session");
    assert_eq!(ended.status, 303);
    assert_eq!(ended.header("location"), Some("/console/sign-in"));
    let bearer = app.request("GET", "/console").bearer(&admin).send();
    assert_eq!(bearer.status, 303);
}

#[test]
fn the_clients_page_lists_clients_in_reach_marks_expiring_ones_and_hides_revoked_unless_asked() {
    let app = spawn_app();
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada Lovelace", "admin");
    client(
        &app,
        &admin,
        json!({"name": "billing-sync", "role": "reader"}),
    );
    let soon = client(
        &app,
        &admin,
        json!({"name": "short-lived", "role": "reader", "expires_in": 259200}),
    );
    let gone = client(
        &app,
        &admin,
        json!({"name": "old-printer", "role": "reader"}),
    );
    let revoked = app.admin(
        "POST",
        &format!("/admin/v1/clients/{gone}/revoke"),
        &admin,
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    let cookie = sign_in(&app, "ada@example.com");
    let answer = page(&app, "/console", &cookie);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_page(&answer);
    let body = &answer.body;
    assert!(body.contains("Client credentials"), "{body}");
    assert!(body.contains("Ada Lovelace"), "{body}");
    assert!(body.contains("billing-sync"), "{body}");
    assert!(!body.contains("old-printer"), "revoked is hidden: {body}");
    for column in [
        "Name",
        "Client id",
        "Role",
        "Tenant",
        "Status",
        "Expires",
        "Last used",
    ] {
        assert!(
            body.contains(&format!(r#"<th scope="col">{column}</th>"#)),
            "{column}"
        );
    }

    // Sign-out is a form with the session's CSRF token.
    let csrf = app
        .request("GET", "/admin/v1/me")
        .header("Cookie", &cookie)
        .send()
        .json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.contains(r#"<form method="post" action="/console/sign-out">"#),
        "{body}"
    );
    assert!(
        body.contains(&format!(r#"name="csrf_token" value="{csrf}""#)),
        "{body}"
    );

    // Expiring in 3 days: marked; the others are not.
    let marked: Vec<&str> = rows(body)
        .into_iter()
        .filter(|row| row.contains("row-expiring"))
        .collect();
    assert_eq!(marked.len(), 1, "{body}");
    assert!(marked[0].contains(&soon), "{}", marked[0]);
    assert!(marked[0].contains("Expires in 3 days"), "{}", marked[0]);

    // Revoked ones when asked, and the filter stays in the form.
    let all = page(&app, "/console?show_revoked=1", &cookie);
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("old-printer"), "{}", all.body);
    assert!(all.body.contains("billing-sync"), "{}", all.body);
    assert!(all.body.contains(r#"value="1" checked"#), "{}", all.body);
    let only_revoked = page(&app, "/console?status=revoked", &cookie);
    assert!(only_revoked.body.contains("old-printer"));
    assert!(!only_revoked.body.contains("billing-sync"));
    let by_role = page(&app, "/console?role=admin", &cookie);
    assert!(!by_role.body.contains("billing-sync"), "{}", by_role.body);

    // The sign-out form works as a browser sends it.
    let out = app
        .request("POST", "/console/sign-out")
        .header("Cookie", &cookie)
        .send_form(&[("csrf_token", &csrf)]);
    assert_eq!(out.status, 303, "{}", out.body);
    assert_console_headers(&out);
    assert_eq!(page(&app, "/console", &cookie).status, 303);
}

#[test]
fn the_clients_page_pages_with_the_cursor_and_keeps_the_filters() {
    let app = spawn_app();
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    for i in 0..51 {
        client(
            &app,
            &admin,
            json!({"name": format!("device-{i:02}"), "role": "reader"}),
        );
    }
    let cookie = sign_in(&app, "ada@example.com");
    let first = page(&app, "/console?role=reader", &cookie);
    assert_eq!(first.status, 200);
    assert_eq!(rows(&first.body).len(), 50);
    let next = first
        .body
        .split(r#"<a class="button" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(next.starts_with("/console?role=reader&after="), "{next}");
    let second = page(&app, &next, &cookie);
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second.body).len(), 1, "{}", second.body);
}

#[test]
fn a_person_without_clients_read_is_not_offered_clients_and_is_refused_them() {
    let app = spawn_app();
    let admin = app.admin_token();
    let role = app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": "auditor", "scopes": ["audit:read"]})),
    );
    assert_eq!(role.status, 201, "{}", role.body);
    person(&app, &admin, "eve@example.com", "Eve", "auditor");
    client(
        &app,
        &admin,
        json!({"name": "billing-sync", "role": "reader"}),
    );
    let cookie = sign_in(&app, "eve@example.com");
    // Signing in lands on /console; without clients:read, on to the audit.
    let answer = page(&app, "/console", &cookie);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/console/audit"));
    let audit = page(&app, "/console/audit", &cookie);
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert_page(&audit);
    assert!(
        !audit.body.contains(r#"href="/console/tokens""#),
        "{}",
        audit.body
    );
    // Asked for anyway, the lists are refused.
    let tokens = page(&app, "/console/tokens", &cookie);
    assert_eq!(tokens.status, 403, "{}", tokens.body);
    assert!(!tokens.body.contains("billing-sync"), "{}", tokens.body);
}

#[test]
fn garbage_query_parameters_never_break_a_page() {
    let app = spawn_app();
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let cookie = sign_in(&app, "ada@example.com");
    for query in [
        "?status=nonsense&role=x&x=1",
        "?after=%FF%FE&show_revoked=&status=",
        "?status=active&status=revoked&limit=-1",
        "?%",
    ] {
        let answer = page(&app, &format!("/console{query}"), &cookie);
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    }
    // NUL is refused at the door, as in the admin API (PostgreSQL text
    // cannot hold it), with or without a session.
    for query in ["?role=%00", "?after=%00", "?x%00=1"] {
        let answer = page(&app, &format!("/console{query}"), &cookie);
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_page(&answer);
        let answer = app.request("GET", &format!("/console{query}")).send();
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
    }
    // An empty token is still a link to show; the form says whether it works.
    let empty = app.request("GET", "/console/setup?token=").send();
    assert_eq!(empty.status, 200, "{}", empty.body);
    let setup = app.request("GET", "/console/setup?token=%00").send();
    assert_eq!(setup.status, 400, "{}", setup.body);
    assert_page(&setup);
    let setup = app.request("GET", "/console/setup?token=abc&y=2").send();
    assert_eq!(setup.status, 200, "{}", setup.body);
    assert_page(&setup);
    assert!(
        setup
            .body
            .contains(r#"<form method="post" action="/console/setup""#),
        "{}",
        setup.body
    );
    assert!(setup.body.contains(r#"name="token" value="abc""#));
}

#[test]
fn the_create_form_offers_only_the_roles_the_person_may_hand_out() {
    let app = spawn_app();
    let admin = app.admin_token();
    let role = app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": "helpdesk", "scopes": ["clients:read", "clients:write", "tenants:read"]})),
    );
    assert_eq!(role.status, 201, "{}", role.body);
    person(&app, &admin, "hal@example.com", "Hal", "helpdesk");
    let cookie = sign_in(&app, "hal@example.com");
    let form = page(&app, "/console/clients/new", &cookie);
    assert_eq!(form.status, 200, "{}", form.body);
    assert_page(&form);
    // Roles holding admin scopes Hal lacks are not offered...
    assert!(
        !form.body.contains(r#"<option value="admin""#),
        "{}",
        form.body
    );
    // ...those within his rights are.
    assert!(
        form.body.contains(r#"<option value="reader""#),
        "{}",
        form.body
    );
    assert!(
        form.body.contains(r#"<option value="helpdesk""#),
        "{}",
        form.body
    );
    // And the server refuses the one not offered, creating nothing.
    let me = app
        .request("GET", "/admin/v1/me")
        .header("Cookie", &cookie)
        .send();
    let csrf = me.json()["csrf_token"].as_str().unwrap().to_string();
    let refused = app
        .request("POST", "/console/clients")
        .header("Cookie", &cookie)
        .header("Accept", BROWSER_ACCEPT)
        .send_form(&[
            ("csrf_token", &csrf),
            ("name", "escalator"),
            ("role", "admin"),
        ]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("escalator"),
        "the form comes back filled in"
    );
    let listed = app.admin("GET", "/admin/v1/clients", &admin, None);
    assert!(!listed.body.contains("escalator"));
}

/// The session's CSRF token, as its forms carry it.
fn csrf_of(app: &TestApp, cookie: &str) -> String {
    app.request("GET", "/admin/v1/me")
        .header("Cookie", cookie)
        .send()
        .json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A console form as a browser sends it.
fn form(app: &TestApp, cookie: &str, path: &str, fields: &[(&str, &str)]) -> TestResponse {
    let csrf = csrf_of(app, cookie);
    let mut fields = fields.to_vec();
    fields.push(("csrf_token", &csrf));
    app.request("POST", path)
        .header("Cookie", cookie)
        .header("Accept", BROWSER_ACCEPT)
        .send_form(&fields)
}

#[test]
fn a_private_key_jwt_client_is_created_from_the_form_with_no_secret_and_its_page_shows_its_keys() {
    // Loopback JWK Set URLs are fetched only where insecure fetches are on.
    let app = spawn_app_with(|s| s.allow_insecure_jwks = true);
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let cookie = sign_in(&app, "ada@example.com");

    let new = page(&app, "/console/clients/new", &cookie);
    assert_eq!(new.status, 200, "{}", new.body);
    assert_page(&new);
    for offered in [
        r#"<select id="token_endpoint_auth_method" name="token_endpoint_auth_method">"#,
        r#"<option value="private_key_jwt""#,
        r#"<textarea id="jwks" name="jwks""#,
        r#"<input id="jwks_uri" name="jwks_uri""#,
        r#"<textarea id="federated_subjects" name="federated_subjects""#,
    ] {
        assert!(new.body.contains(offered), "{offered}: {}", new.body);
    }
    // An API token is its own credential: none of it is offered.
    let token_form = page(&app, "/console/clients/new?kind=api_token", &cookie);
    assert!(!token_form.body.contains("token_endpoint_auth_method"));

    let jwks = Signer::jwks(&[&Signer::new(Algorithm::EdDSA, "k1")]).to_string();
    let made = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "signer"),
            ("role", "reader"),
            ("token_endpoint_auth_method", "private_key_jwt"),
            ("jwks", &jwks),
        ],
    );
    // No secret dialog: straight to the client's page, which says why.
    assert_eq!(made.status, 303, "{}", made.body);
    assert_console_headers(&made);
    let location = made.header("location").unwrap().to_string();
    assert!(
        location.starts_with("/console/clients/kwc_") && location.ends_with("?notice=created-keys"),
        "{location}"
    );
    let id = location
        .trim_start_matches("/console/clients/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let details = page(&app, &location, &cookie);
    assert_eq!(details.status, 200, "{}", details.body);
    assert_page(&details);
    let body = &details.body;
    assert!(body.contains("there is no secret to copy"), "{body}");
    assert!(body.contains("(private_key_jwt)"), "{body}");
    assert!(body.contains("1 key: k1"), "{body}");
    assert!(!body.contains("kws_"), "{body}");
    assert!(
        !body.contains(r#"/secret""#),
        "no new secret for it: {body}"
    );
    let api = app.admin("GET", &format!("/admin/v1/clients/{id}"), &admin, None);
    assert_eq!(api.json()["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(api.json()["jwks"]["keys"][0]["kid"], "k1");

    // A mistake comes back as the form, filled in, saying what; nothing made.
    let bad = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "half-signer"),
            ("role", "reader"),
            ("token_endpoint_auth_method", "private_key_jwt"),
            ("jwks", "{\"keys\": [not json"),
        ],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_page(&bad);
    assert!(bad.body.contains("JWK Set must be JSON"), "{}", bad.body);
    assert!(bad.body.contains(r#"value="half-signer""#), "{}", bad.body);
    assert!(
        bad.body
            .contains(r#"<option value="private_key_jwt" selected>"#),
        "the method is kept: {}",
        bad.body
    );
    let no_keys = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "half-signer"),
            ("role", "reader"),
            ("token_endpoint_auth_method", "private_key_jwt"),
        ],
    );
    assert_eq!(no_keys.status, 400, "{}", no_keys.body);
    assert!(
        no_keys.body.contains("private_key_jwt needs"),
        "{}",
        no_keys.body
    );
    // A JWK Set URL is fetched first: one that does not answer is refused.
    let keys = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "k2")]);
    let nowhere = format!("{}/nowhere.json", keys.url);
    let unfetched = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "half-signer"),
            ("role", "reader"),
            ("token_endpoint_auth_method", "private_key_jwt"),
            ("jwks_uri", &nowhere),
        ],
    );
    assert_eq!(unfetched.status, 400, "{}", unfetched.body);
    assert!(unfetched.body.contains("404"), "{}", unfetched.body);
    let listed = app.admin("GET", "/admin/v1/clients", &admin, None);
    assert!(!listed.body.contains("half-signer"));

    // The edit form: the method is fixed; the keys move to a URL.
    let edit = page(&app, &format!("/console/clients/{id}/edit"), &cookie);
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert_page(&edit);
    assert!(edit.body.contains("fixed at creation"), "{}", edit.body);
    assert!(
        edit.body.contains("&#34;k1&#34;") || edit.body.contains("&quot;k1&quot;"),
        "{}",
        edit.body
    );
    assert!(!edit.body.contains(r#"name="token_endpoint_auth_method""#));
    let uri = keys.jwks_uri();
    let saved = form(
        &app,
        &cookie,
        &format!("/console/clients/{id}/edit"),
        &[
            ("name", "signer"),
            ("access_token_ttl", "3600"),
            ("jwks", ""),
            ("jwks_uri", &uri),
        ],
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    let api = app
        .admin("GET", &format!("/admin/v1/clients/{id}"), &admin, None)
        .json();
    assert_eq!(api["jwks_uri"], uri.as_str());
    assert_eq!(api["jwks"], serde_json::Value::Null);
    let details = page(&app, &format!("/console/clients/{id}"), &cookie);
    assert!(details.body.contains(&uri), "{}", details.body);
    // Saving again leaves the keys alone, even with the URL gone quiet.
    keys.set_up(false);
    let renamed = form(
        &app,
        &cookie,
        &format!("/console/clients/{id}/edit"),
        &[
            ("name", "signer-2"),
            ("access_token_ttl", "3600"),
            ("jwks_uri", &uri),
        ],
    );
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    let audit = app
        .admin("GET", &format!("/admin/v1/audit?target={id}"), &admin, None)
        .json();
    let fields: Vec<&serde_json::Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "client.update")
        .map(|e| &e["details"]["fields"])
        .collect();
    assert_eq!(fields.len(), 2, "{audit}");
    assert!(!fields[0].to_string().contains("jwks"), "{}", fields[0]);
    assert!(fields[1].to_string().contains("jwks_uri"), "{}", fields[1]);
}

#[test]
fn a_trusted_issuer_is_added_from_its_page_named_by_a_client_and_removed_after_a_confirmation() {
    let app = spawn_app_with(|s| s.allow_insecure_jwks = true);
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let cookie = sign_in(&app, "ada@example.com");
    let issuer = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "ci-1")]);

    let empty = page(&app, "/console/trusted-issuers", &cookie);
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_page(&empty);
    assert!(
        empty.body.contains("No trusted issuers yet"),
        "{}",
        empty.body
    );
    assert!(
        empty.body.contains(
            r#"<a href="/console/trusted-issuers" aria-current="page">Trusted issuers</a>"#
        ),
        "in the navigation: {}",
        empty.body
    );
    assert!(
        empty
            .body
            .contains(r#"<form method="post" action="/console/trusted-issuers""#),
        "{}",
        empty.body
    );

    // Keys that cannot be had: refused, with a way back; nothing added.
    let refused = form(
        &app,
        &cookie,
        "/console/trusted-issuers",
        &[
            ("issuer", "https://ci.example"),
            ("jwks_uri", &format!("{}/nowhere.json", issuer.url)),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_page(&refused);
    assert!(refused.body.contains("404"), "{}", refused.body);
    assert!(
        refused.body.contains(r#"href="/console/trusted-issuers""#),
        "{}",
        refused.body
    );
    // By discovery: the issuer's own document names its keys.
    let added = form(
        &app,
        &cookie,
        "/console/trusted-issuers",
        &[
            ("issuer", &issuer.url),
            ("tenant_id", &app.root_tenant),
            ("description", "the CI cluster"),
        ],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(
        added.header("location"),
        Some("/console/trusted-issuers?notice=created")
    );
    let listed = app
        .admin("GET", "/admin/v1/trusted-issuers", &admin, None)
        .json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let id = items[0]["id"].as_str().unwrap().to_string();
    let shown = page(&app, "/console/trusted-issuers?notice=created", &cookie);
    assert_page(&shown);
    assert!(shown.body.contains("Created."), "{}", shown.body);
    assert!(shown.body.contains(&issuer.url), "{}", shown.body);
    assert!(shown.body.contains("the CI cluster"), "{}", shown.body);
    assert!(
        shown.body.contains("its discovery document"),
        "{}",
        shown.body
    );
    let confirm_href = format!("/console/trusted-issuers/{id}/delete");
    assert!(shown.body.contains(&confirm_href), "{}", shown.body);

    // A client answers to a subject of it, typed one a line.
    let subjects = format!(
        "{0} repo:acme/app:ref:refs/heads/main\n  {0}   system:serviceaccount:ns:name  \n",
        issuer.url
    );
    let made = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "deployer"),
            ("role", "reader"),
            ("token_endpoint_auth_method", "private_key_jwt"),
            ("federated_subjects", &subjects),
        ],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    let client_page = made.header("location").unwrap().to_string();
    let client_id = client_page
        .trim_start_matches("/console/clients/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let api = app
        .admin(
            "GET",
            &format!("/admin/v1/clients/{client_id}"),
            &admin,
            None,
        )
        .json();
    assert_eq!(
        api["federated_subjects"],
        json!([
            {"issuer": issuer.url, "subject": "repo:acme/app:ref:refs/heads/main"},
            {"issuer": issuer.url, "subject": "system:serviceaccount:ns:name"}
        ])
    );
    let details = page(&app, &client_page, &cookie);
    assert!(
        details
            .body
            .contains(&format!("{} repo:acme/app:ref:refs/heads/main", issuer.url)),
        "{}",
        details.body
    );
    let one_word = form(
        &app,
        &cookie,
        "/console/clients",
        &[
            ("kind", "client_credentials"),
            ("name", "typo"),
            ("role", "reader"),
            ("federated_subjects", &issuer.url),
        ],
    );
    assert_eq!(one_word.status, 400, "{}", one_word.body);
    assert!(
        one_word.body.contains("a space and a subject"),
        "{}",
        one_word.body
    );

    // Delete: a confirmation naming the issuer; refused while named.
    let confirm = page(&app, &confirm_href, &cookie);
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert_page(&confirm);
    assert!(
        confirm
            .body
            .contains(&format!("Stop trusting {}?", issuer.url)),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains(&format!(r#"<form method="post" action="{confirm_href}""#)),
        "{}",
        confirm.body
    );
    let in_use = form(&app, &cookie, &confirm_href, &[]);
    assert_eq!(in_use.status, 409, "{}", in_use.body);
    assert_page(&in_use);
    // The client's edit form shows its subjects one a line, and replaces
    // them whole.
    let edit_href = format!("/console/clients/{client_id}/edit");
    let edit = page(&app, &edit_href, &cookie);
    assert!(
        edit.body
            .contains(&format!("{} system:serviceaccount:ns:name", issuer.url)),
        "{}",
        edit.body
    );
    let one = format!("{} system:serviceaccount:ns:name", issuer.url);
    let saved = form(
        &app,
        &cookie,
        &edit_href,
        &[("name", "deployer"), ("federated_subjects", &one)],
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    let api = app
        .admin(
            "GET",
            &format!("/admin/v1/clients/{client_id}"),
            &admin,
            None,
        )
        .json();
    assert_eq!(
        api["federated_subjects"].as_array().unwrap().len(),
        1,
        "{api}"
    );
    // Once no client names it, the issuer may go.
    let disabled = form(
        &app,
        &cookie,
        &format!("/console/clients/{client_id}/disable"),
        &[],
    );
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    let deleted = form(
        &app,
        &cookie,
        &format!("/console/clients/{client_id}/delete"),
        &[],
    );
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let gone = form(&app, &cookie, &confirm_href, &[]);
    assert_eq!(gone.status, 303, "{}", gone.body);
    assert_eq!(
        gone.header("location"),
        Some("/console/trusted-issuers?notice=deleted")
    );
    let listed = app
        .admin("GET", "/admin/v1/trusted-issuers", &admin, None)
        .json();
    assert_eq!(listed["items"], json!([]));
    let audit = app
        .admin("GET", &format!("/admin/v1/audit?target={id}"), &admin, None)
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trusted_issuer.delete", "trusted_issuer.create"]);
}

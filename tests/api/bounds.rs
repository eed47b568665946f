//! Integers and dates in requests are range-checked before any arithmetic:
//! out of range is 400 `invalid_request` naming the field, and nothing
//! changes. The next write after a refusal goes through at once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const TEN_YEARS: i64 = 3650 * 86_400;

fn rfc3339_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Every bad `expires_in` / `expires_at` value, as (field, value).
fn bad_expiries() -> Vec<(&'static str, Value)> {
    vec![
        ("expires_in", json!(9_223_372_036_854_775_807_i64)),
        ("expires_in", json!(18_446_744_073_709_551_615_u64)),
        ("expires_in", json!(-9_223_372_036_854_775_808_i64)),
        ("expires_in", json!(-5)),
        ("expires_in", json!(0)),
        ("expires_in", json!(1.5)),
        ("expires_in", json!(1e300)),
        ("expires_in", json!("9223372036854775807")),
        ("expires_in", json!("-60")),
        ("expires_in", json!("1.5")),
        ("expires_in", json!(TEN_YEARS + 1)),
        ("expires_in", json!(true)),
        ("expires_at", json!("2000-01-01T00:00:00Z")),
        ("expires_at", json!(rfc3339_in(-60))),
        ("expires_at", json!(rfc3339_in(TEN_YEARS + 86_400))),
        ("expires_at", json!("9999-12-31T23:59:59Z")),
        ("expires_at", json!("+275760-09-13T00:00:00Z")),
        ("expires_at", json!(1.5)),
        ("expires_at", json!(9_223_372_036_854_775_807_i64)),
    ]
}

/// A client can be created right away: a refused request left no lock behind.
fn next_write_goes_through_at_once(app: &TestApp, token: &str) {
    let started = Instant::now();
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        token,
        Some(json!({"name": "after", "role": "reader"})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the write after a refused request took {:?}",
        started.elapsed()
    );
}

fn client_count(app: &TestApp, token: &str) -> usize {
    let listed = app.admin("GET", "/admin/v1/clients?status=all&limit=500", token, None);
    listed.json()["items"].as_array().unwrap().len()
}

#[test]
fn out_of_range_expiry_on_create_is_400_naming_the_field_and_creates_nothing() {
    let app = spawn_app();
    let token = app.admin_token();
    for (field, value) in bad_expiries() {
        let before = client_count(&app, &token);
        let body = json!({"name": "x", "role": "uploader", field: value});
        let response = app.admin("POST", "/admin/v1/clients", &token, Some(body.clone()));
        let error = response.assert_error(400, "invalid_request");
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body}: {description}");
        assert!(!description.contains("untagged"), "{body}: {description}");
        // Everyone but the new client, created after, is as before.
        assert_eq!(
            client_count(&app, &token),
            before,
            "{body} created a client"
        );
        next_write_goes_through_at_once(&app, &token);
    }
}

#[test]
fn a_fractional_expires_in_is_told_what_a_duration_is() {
    let app = spawn_app();
    let token = app.admin_token();
    let response = app.admin(
        "POST",
        "/admin/v1/clients",
        &token,
        Some(json!({"name": "x", "role": "uploader", "expires_in": 1.5})),
    );
    let error = response.assert_error(400, "invalid_request");
    let description = error["error_description"].as_str().unwrap();
    assert!(
        description.contains("expires_in")
            && description.contains("\"3m\" (months)")
            && description.contains("whole seconds"),
        "{description}"
    );
}

#[test]
fn out_of_range_expiry_on_patch_is_400_naming_the_field_and_changes_nothing() {
    let app = spawn_app();
    let token = app.admin_token();
    let created = app
        .admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "x", "role": "uploader", "expires_in": "1m"})),
        )
        .json();
    let path = format!(
        "/admin/v1/clients/{}",
        created["client_id"].as_str().unwrap()
    );
    let before = app.admin("GET", &path, &token, None).json();
    for (field, value) in bad_expiries() {
        let body = json!({ field: value });
        let response = app.admin("PATCH", &path, &token, Some(body.clone()));
        let error = response.assert_error(400, "invalid_request");
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body}: {description}");
        let after = app.admin("GET", &path, &token, None).json();
        assert_eq!(after["expires_at"], before["expires_at"], "{body}");
        assert_eq!(after["updated_at"], before["updated_at"], "{body}");
        next_write_goes_through_at_once(&app, &token);
    }
}

#[test]
fn expiry_up_to_ten_years_ahead_is_accepted() {
    let app = spawn_app();
    let token = app.admin_token();
    for (field, value) in [
        ("expires_in", json!(TEN_YEARS)),
        ("expires_in", json!("1y")),
        ("expires_at", json!(rfc3339_in(TEN_YEARS - 60))),
    ] {
        let response = app.admin(
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": "x", "role": "uploader", field: value})),
        );
        assert_eq!(response.status, 201, "{field} {value}: {}", response.body);
        assert!(response.json()["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
    }
}

#[test]
fn a_panic_inside_a_write_transaction_does_not_keep_the_write_lock() {
    let app = spawn_app();
    let token = app.admin_token();
    let db = app.db.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        db.run_here(|conn| {
            conn.write(|_tx| -> Result<(), keyward::service::ServiceError> {
                panic!("a bug inside a write transaction")
            })
        })
    }));
    assert!(outcome.is_err());
    next_write_goes_through_at_once(&app, &token);
}

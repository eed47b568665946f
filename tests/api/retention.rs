//! Retention (API.md section 4): credentials expired or revoked more than
//! `KEYWARD_RETENTION_DAYS` ago go, with their hashes, each audited and
//! dropped from the directory; the rest stay. Time is set in the rows, and
//! the purge is given its `now`, so nothing waits days.

use diesel::prelude::*;
use keyward::service::retention::{self, Policy, Report};
use keyward::store::schema::{api_tokens, clients};
use serde_json::json;

use crate::helpers::{spawn_app_with, Auth, CliRunner, TestApp};

/// An app whose own purge (at start, then hourly) keeps everything, so that
/// only the test's purges remove anything: otherwise the server's start-up
/// purge, late on a busy machine, could take a client the test aged.
fn spawn_app() -> TestApp {
    spawn_app_with(|s| s.retention_days = 36_500)
}

const DAY: i64 = 86_400;

/// Sets a client's expiry or revocation time straight in the store, without
/// telling any cache (the purge must do that itself).
fn age(app: &TestApp, client_id: &str, expires_at: Option<i64>, revoked_at: Option<i64>) {
    let mut conn = app.conn();
    let mut status = "active";
    if revoked_at.is_some() {
        status = "revoked";
    }
    diesel::update(clients::table.find(client_id))
        .set((
            clients::expires_at.eq(expires_at),
            clients::revoked_at.eq(revoked_at),
            clients::status.eq(status),
        ))
        .execute(&mut conn)
        .unwrap();
}

fn purge(app: &TestApp, policy: Policy, dry_run: bool) -> Report {
    let now = keyward::service::now();
    app.db
        .run_here(move |conn| retention::purge(conn, policy, now, dry_run))
        .unwrap()
}

fn exists(app: &TestApp, admin: &str, id: &str) -> bool {
    let got = app.admin("GET", &format!("/admin/v1/clients/{id}"), admin, None);
    assert!(got.status == 200 || got.status == 404, "{}", got.body);
    got.status == 200
}

fn token_works(app: &TestApp, id: &str, secret: &str) -> bool {
    app.request("POST", "/oauth/token")
        .unchecked()
        .basic(id, secret)
        .send_form(&[("grant_type", "client_credentials")])
        .status
        == 200
}

#[test]
fn credentials_past_retention_go_audited_and_forgotten_and_the_rest_stay() {
    let app = spawn_app();
    let admin = app.admin_token();
    let now = keyward::service::now();
    let (old, old_secret) = app.new_client("reader", |_| {});
    let (recent, _) = app.new_client("reader", |_| {});
    let (revoked, _) = app.new_client("reader", |_| {});
    let (active, active_secret) = app.new_client("reader", |_| {});
    let (tokens, first_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    // The node has the old client in its directory, still thinking it valid.
    assert!(token_works(&app, &old.client_id, &old_secret));
    age(&app, &old.client_id, Some(now - 30 * DAY), None);
    age(&app, &recent.client_id, Some(now - 10 * DAY), None);
    age(&app, &revoked.client_id, None, Some(now - 29 * DAY));
    // The API token client stays; its first string expired long ago.
    let reissued = app.admin(
        "POST",
        &format!("/admin/v1/clients/{}/tokens", tokens.client_id),
        &admin,
        None,
    );
    assert_eq!(reissued.status, 201, "{}", reissued.body);
    {
        let mut conn = app.conn();
        let first_hash = keyward::tokens::opaque::Secret::new(first_token.clone()).hash();
        let n = diesel::update(api_tokens::table.filter(api_tokens::token_hash.eq(first_hash)))
            .set(api_tokens::expires_at.eq(now - 40 * DAY))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(n, 1);
    }

    // A dry run says what would go, and removes nothing.
    let dry = purge(&app, Policy::default(), true);
    let mut want = vec![old.client_id.clone(), revoked.client_id.clone()];
    want.sort();
    assert_eq!(dry.clients, want);
    assert_eq!(dry.api_tokens.len(), 1);
    assert!(exists(&app, &admin, &old.client_id));

    let report = purge(&app, Policy::default(), false);
    assert_eq!(report.clients, want);
    assert_eq!(report.api_tokens, dry.api_tokens);
    assert!(!report.elsewhere);
    assert!(!exists(&app, &admin, &old.client_id));
    assert!(!exists(&app, &admin, &revoked.client_id));
    assert!(exists(&app, &admin, &recent.client_id));
    assert!(exists(&app, &admin, &active.client_id));
    assert!(exists(&app, &admin, &tokens.client_id));
    // The directory forgot it: no token, though it was cached as valid.
    assert!(!token_works(&app, &old.client_id, &old_secret));
    assert!(token_works(&app, &active.client_id, &active_secret));
    // One string left, the reissued one; the purged one is unknown.
    let listed = app.admin(
        "GET",
        &format!("/admin/v1/clients/{}/tokens", tokens.client_id),
        &admin,
        None,
    );
    assert_eq!(
        listed.json()["items"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    let introspected = app.post_form(
        "/oauth/introspect",
        &[("token", &first_token)],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(introspected.json()["active"], false);
    // Each removal is in the audit log, under the credential's tenant.
    let audit = app
        .admin("GET", "/admin/v1/audit?action=purge", &admin, None)
        .json();
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{audit}");
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"expired") && reasons.contains(&"revoked"),
        "{audit}"
    );
    assert!(events.iter().all(|e| e["actor"] == "retention"));
    // Nothing more to do: a second purge removes nothing.
    let again = purge(&app, Policy::default(), false);
    assert!(again.clients.is_empty() && again.api_tokens.is_empty());

    // Retention 0: whatever has expired or been revoked goes.
    let zero = purge(
        &app,
        Policy {
            days: 0,
            audit_days: None,
        },
        false,
    );
    assert_eq!(zero.clients, vec![recent.client_id.clone()]);
}

/// More than a batch is due, by expiry, by revocation and by both: the
/// purge takes each exactly once, across batches, and leaves
/// what is not yet due.
#[test]
fn a_backlog_larger_than_a_batch_goes_each_client_once_whatever_made_it_due() {
    let app = spawn_app();
    let now = keyward::service::now();
    let batch = retention::CLIENT_BATCH as usize;
    let mut due = Vec::new();
    let mut kept = Vec::new();
    for i in 0..(batch + 12) {
        let (client, _) = app.new_client("reader", |_| {});
        // Expired, revoked, or both, at different ages past the cutoff.
        let ago = (31 + i as i64) * DAY;
        match i % 3 {
            0 => age(&app, &client.client_id, Some(now - ago), None),
            1 => age(&app, &client.client_id, None, Some(now - ago)),
            _ => age(
                &app,
                &client.client_id,
                Some(now - ago),
                Some(now - ago - DAY),
            ),
        }
        due.push(client.client_id);
    }
    // Revoked within the retention (28 days by default), and active.
    for ago in [Some(27 * DAY), None] {
        let (client, _) = app.new_client("reader", |_| {});
        age(&app, &client.client_id, None, ago.map(|a| now - a));
        kept.push(client.client_id);
    }
    let report = purge(&app, Policy::default(), false);
    let mut removed = report.clients.clone();
    removed.dedup();
    assert_eq!(removed.len(), report.clients.len(), "each client once");
    due.sort();
    assert_eq!(report.clients, due);
    let mut conn = app.conn();
    let left: Vec<String> = clients::table
        .filter(clients::client_id.eq_any(&due))
        .select(clients::client_id)
        .load(&mut conn)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let stayed: i64 = clients::table
        .filter(clients::client_id.eq_any(&kept))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(stayed, 2);
    let audited: i64 = keyward::store::schema::audit_events::table
        .filter(keyward::store::schema::audit_events::action.eq("purge"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(audited, due.len() as i64);
}

#[test]
fn keyward_purge_prints_what_it_removes_and_dry_run_removes_nothing() {
    let app = spawn_app();
    let admin = app.admin_token();
    let now = keyward::service::now();
    let (gone, _) = app.new_client("reader", |_| {});
    let (kept, _) = app.new_client("reader", |_| {});
    age(&app, &gone.client_id, Some(now - 60 * DAY), None);
    age(&app, &kept.client_id, Some(now - 3 * DAY), None);
    let cli = CliRunner::for_app(&app);
    let dry = cli.run(&["purge", "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&dry.stdout).trim(), gone.client_id);
    assert!(exists(&app, &admin, &gone.client_id));
    let done = cli.run(&["purge"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), gone.client_id);
    assert!(String::from_utf8_lossy(&done.stderr).contains("removed 1 clients"));
    assert!(!exists(&app, &admin, &gone.client_id));
    assert!(exists(&app, &admin, &kept.client_id));
    // KEYWARD_RETENTION_DAYS=0: the recently expired one goes too.
    let zero = cli
        .command(&["purge", "--json"])
        .env("KEYWARD_RETENTION_DAYS", "0")
        .output()
        .unwrap();
    assert!(
        zero.status.success(),
        "{}",
        String::from_utf8_lossy(&zero.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&zero.stdout).unwrap();
    assert_eq!(report["clients"], json!([kept.client_id]));
    assert!(!exists(&app, &admin, &kept.client_id));
    // A bad setting is refused with a clear message.
    let bad = cli
        .command(&["purge"])
        .env("KEYWARD_RETENTION_DAYS", "-1")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("KEYWARD_RETENTION_DAYS")
            || String::from_utf8_lossy(&bad.stderr).contains("retention-days")
    );
}

/// Takes or renews the purge lease for `holder`, as another server's purge
/// would.
fn claim_lease(app: &TestApp, holder: &'static str) -> bool {
    app.db
        .run_here(|conn| -> Result<bool, keyward::service::ServiceError> {
            Ok(conn.write(|tx| keyward::store::retention::claim_purge(tx, holder))?)
        })
        .unwrap()
}

fn lease(app: &TestApp) -> Option<(String, i64)> {
    use keyward::store::schema::leases;
    leases::table
        .filter(leases::name.eq("purge"))
        .select((leases::holder, leases::expires_at))
        .first(&mut app.conn())
        .optional()
        .unwrap()
}

#[test]
fn a_purge_in_progress_elsewhere_is_left_to_that_server_until_its_lease_ends_or_lapses() {
    let app = spawn_app();
    let admin = app.admin_token();
    let (gone, _) = app.new_client("reader", |_| {});
    age(
        &app,
        &gone.client_id,
        Some(keyward::service::now() - 60 * DAY),
        None,
    );
    // Another server's purge holds the lease (between two of its batches:
    // no transaction open).
    assert!(claim_lease(&app, "purge_other"));
    let report = purge(&app, Policy::default(), false);
    assert!(report.elsewhere);
    assert!(report.clients.is_empty());
    assert!(exists(&app, &admin, &gone.client_id));
    assert_eq!(lease(&app).unwrap().0, "purge_other", "left as it was");
    // `keyward purge` says why it removed nothing.
    let cli = CliRunner::for_app(&app).run(&["purge"]);
    let said = String::from_utf8_lossy(&cli.stderr);
    assert!(cli.status.success(), "{said}");
    assert!(said.contains("another purge holds the lease"), "{said}");
    assert!(cli.stdout.is_empty());
    assert!(exists(&app, &admin, &gone.client_id));
    // It renews; still not ours.
    assert!(claim_lease(&app, "purge_other"));
    assert!(purge(&app, Policy::default(), false).elsewhere);
    // That server died: its lease lapses and the next purge takes over.
    let mut conn = app.conn();
    diesel::update(keyward::store::schema::leases::table)
        .set(keyward::store::schema::leases::expires_at.eq(keyward::service::now() - 1))
        .execute(&mut conn)
        .unwrap();
    let report = purge(&app, Policy::default(), false);
    assert!(!report.elsewhere);
    assert_eq!(report.clients, vec![gone.client_id.clone()]);
    assert!(!exists(&app, &admin, &gone.client_id));
    // A purge that ended released its lease: the next starts at once.
    let (holder, expires_at) = lease(&app).unwrap();
    assert!(holder.starts_with("purge_") && holder != "purge_other");
    assert!(expires_at <= keyward::service::now(), "released");
    assert!(claim_lease(&app, "purge_other"));
}

#[test]
fn a_second_purge_started_during_the_rest_between_two_batches_leaves_the_work_to_the_first() {
    let app = spawn_app();
    let now = keyward::service::now();
    let mut due = Vec::new();
    // Three batches: the first purge rests twice, at least 20 ms each.
    for _ in 0..(3 * retention::CLIENT_BATCH) {
        let (client, _) = app.new_client("reader", |_| {});
        age(&app, &client.client_id, Some(now - 60 * DAY), None);
        due.push(client.client_id);
    }
    due.sort();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| purge(&app, Policy::default(), false));
        // The first batch has committed: the lease is the first purge's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while lease(&app).is_none_or(|(_, until)| until <= keyward::service::now()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the first purge never took the lease"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let second = purge(&app, Policy::default(), false);
        let first = first.join().unwrap();
        assert!(!first.elsewhere);
        assert_eq!(first.clients, due, "the first purge did it all");
        assert!(second.elsewhere, "the second purge saw the lease");
        assert!(second.clients.is_empty(), "{:?}", second.clients);
    });
}

#[test]
fn keyward_purge_with_the_store_down_says_so_and_fails() {
    // Nothing listens on port 1: the store is down.
    let dir = tempfile::tempdir().unwrap();
    let output = crate::helpers::keyward_command()
        .args(["purge"])
        .env(
            "KEYWARD_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/keyward",
        )
        .env("KEYWARD_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("database") || stderr.contains("store"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing claimed removed");
}

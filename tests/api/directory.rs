//! The credential directory of a single node, on either store: warm token
//! and introspection requests make no database round trip, and what
//! another process commits (the CLI: on SQLite through the change log, on
//! PostgreSQL through NOTIFY) reaches the warm cache.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, Auth, CliRunner, TestApp};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

fn db_operations(app: &TestApp) -> u64 {
    app.db_operations.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits until the node says it hears of changes (its cache is in use).
fn wait_for_the_change_channel(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app.get("/readyz", Auth::None).json();
        if ready["change_channel"] == "up" {
            return;
        }
        assert!(Instant::now() < deadline, "channel never came up: {ready}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The token endpoint's status for client_credentials with these credentials.
fn token_status(app: &TestApp, client_id: &str, secret: &str) -> u16 {
    app.post_form("/oauth/token", &[GRANT], Auth::Basic(client_id, secret))
        .status
}

/// Returns once the node has heard, through its change channel, every change
/// committed so far. A node applies its own changes at once and hears them
/// again from the channel; an echo that arrives after a warm-up evicts a
/// warm entry, and the next request reads the store. So: one more change,
/// made by another process (the CLI), seen to take effect; the channel
/// delivers in commit order, so everything before it has been applied.
fn let_the_channel_catch_up(app: &TestApp) {
    let (sentinel, secret) = app.new_client("reader", |_| {});
    let works = || token_status(app, &sentinel.client_id, &secret) == 200;
    assert!(works());
    CliRunner::for_app(app).run_ok(&["client", "disable", &sentinel.client_id]);
    until_not("the sentinel's disable", works);
}

/// Runs `pass` until one whole pass reads nothing from the store. A fill is
/// dropped when a change is applied while it reads (the last rows of the
/// sentinel's transaction can still be arriving), so one pass may not do.
fn warm(app: &TestApp, pass: impl Fn()) {
    for _ in 0..20 {
        let before = db_operations(app);
        pass();
        if db_operations(app) == before {
            return;
        }
    }
    panic!("twenty passes and the cache is still cold");
}

/// Polls `still` every 2 ms for up to 2 s; fails when it never stops.
fn until_not(what: &str, mut still: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while still() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: another process's change did not reach the server's cache"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

#[test]
fn in_steady_state_token_and_introspection_requests_make_no_database_round_trip() {
    let app = spawn_app();
    wait_for_the_change_channel(&app);
    let (client, secret) = app.new_client("reader", |_| {});
    let (_, api_token) = app.new_client("reader", |r| r.kind = Some("api_token".into()));
    let token = app.token_for(&client.client_id, &secret, &[]);
    let_the_channel_catch_up(&app);
    let pass = |rounds: usize| {
        for _ in 0..rounds {
            assert_eq!(token_status(&app, &client.client_id, &secret), 200);
            assert_eq!(app.introspect(&token)["active"], true);
            assert_eq!(app.introspect(&api_token)["active"], true);
        }
    };
    // The first pass fills the cache (the admin who introspects too).
    warm(&app, || pass(1));
    let before = db_operations(&app);
    pass(20);
    assert_eq!(
        db_operations(&app) - before,
        0,
        "60 warm requests read the database"
    );
    // And the count is real: a cold lookup (an unknown client) reads.
    let before = db_operations(&app);
    assert_eq!(token_status(&app, "kwc_unknown", "kws_x"), 401);
    assert!(
        db_operations(&app) > before,
        "an unknown client was looked up"
    );
}

#[test]
fn what_the_cli_commits_reaches_a_warm_cache_within_moments() {
    let app = spawn_app();
    wait_for_the_change_channel(&app);
    let (client, secret) = app.new_client("reader", |_| {});
    let (api, api_token) = app.new_client("reader", |r| r.kind = Some("api_token".into()));
    let token = app.token_for(&client.client_id, &secret, &[]);
    let_the_channel_catch_up(&app);
    let token_status = || token_status(&app, &client.client_id, &secret);
    // Warm: the client, its token and the API token are served from memory.
    warm(&app, || {
        assert_eq!(token_status(), 200);
        assert_eq!(app.introspect(&token)["active"], true);
        assert_eq!(app.introspect(&api_token)["active"], true);
    });
    let before = db_operations(&app);
    assert_eq!(token_status(), 200);
    assert_eq!(app.introspect(&token)["active"], true);
    assert_eq!(app.introspect(&api_token)["active"], true);
    assert_eq!(db_operations(&app), before, "the cache is warm");

    let cli = CliRunner::for_app(&app);
    let run = |args: &[&str]| {
        cli.run_ok(args);
    };
    run(&["client", "disable", &client.client_id]);
    until_not("disable", || token_status() == 200);
    until_not("disable, introspection", || {
        app.introspect(&token)["active"] == true
    });
    run(&["client", "enable", &client.client_id]);
    until_not("enable", || token_status() != 200);
    run(&["client", "revoke", &api.client_id]);
    until_not("an API token's revocation", || {
        app.introspect(&api_token)["active"] == true
    });
}

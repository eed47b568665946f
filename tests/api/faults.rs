//! Fault injection: whatever the fault, every endpoint that needs the store
//! answers 503 `temporarily_unavailable` with Retry-After while it lasts
//! (never 500, never a 401/403 that blames a valid credential), and the
//! server serves again within 5 s of the store coming back, without a
//! restart. Each case runs a stream of requests (token by Basic, admin list,
//! admin create) through the fault, then checks every answer and that the
//! store holds exactly the creates that answered 201.
//!
//! PostgreSQL cases run only when KEYWARD_TEST_DATABASE_URL is set (the CI's
//! PostgreSQL pass), each on a private instance of its own, never on the
//! shared one; SQLite cases always run. The server runs as a subprocess.

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use serde_json::json;

use crate::fault_env::{
    admin, assert_creates_match_the_store, assert_only_success_or_503, get, summary, Credentials,
    Observation, PrivatePostgres, Relay, ServerOptions, ServerProcess, Tmpfs, Traffic,
};
use crate::helpers::{connect, postgres_or_skip, using_postgres};

/// The bound on healing, from the store coming back.
const HEAL_LIMIT: Duration = Duration::from_secs(5);

/// A server under test with a client and an admin token to drive it.
struct Subject {
    server: ServerProcess,
    credentials: Credentials,
}

fn subject(options: &ServerOptions, prefix: &str) -> Subject {
    let server = ServerProcess::spawn(options);
    let admin_token = server.admin_token();
    let created = admin(
        &server.address,
        "POST",
        "/admin/v1/clients",
        &admin_token,
        Some(json!({"name": format!("{prefix}-caller"), "role": "reader"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let credentials = Credentials {
        address: server.address.clone(),
        client_id: created["client_id"].as_str().unwrap().into(),
        client_secret: created["client_secret"].as_str().unwrap().into(),
        admin_token,
        prefix: prefix.into(),
    };
    Subject {
        server,
        credentials,
    }
}

/// Runs the stream through `fault`, which returns when the store came back,
/// asserts the answers and the time to heal, and returns what was seen.
/// `felt`: the fault must show as at least one 503 (some faults, such as a
/// fast restart, the pool may hide entirely by reconnecting within its
/// checkout wait).
fn through(
    case: &str,
    subject: &Subject,
    felt: bool,
    fault: impl FnOnce() -> Instant,
) -> Vec<Observation> {
    let traffic = Traffic::start(&subject.credentials);
    std::thread::sleep(Duration::from_millis(400));
    let back = fault();
    let healed = traffic.wait_healed(back, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let seen = traffic.stop();
    let unavailable = assert_only_success_or_503(case, &seen);
    assert!(
        !felt || unavailable > 0,
        "{case}: no request met the fault ({}): the test tests nothing",
        summary(&seen)
    );
    let healed = healed.unwrap_or_else(|| {
        panic!(
            "{case}: not healed 10 s after the store came back ({})",
            summary(&seen)
        )
    });
    eprintln!("FAULT {case}: healed in {healed:?}; {}", summary(&seen));
    assert!(
        healed < HEAL_LIMIT,
        "{case}: healed in {healed:?}, over {HEAL_LIMIT:?}"
    );
    seen
}

/// Discovery, JWKS and /healthz answer whatever the store does.
fn assert_store_free_endpoints_answer(server: &ServerProcess) {
    for path in [
        "/healthz",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let answer = get(&server.address, path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
}

/// Opens `n` pooled connections at once (concurrent admin reads).
fn warm_pool(subject: &Subject, n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (address, token) = (
                subject.credentials.address.clone(),
                subject.credentials.admin_token.clone(),
            );
            std::thread::spawn(move || {
                admin(&address, "GET", "/admin/v1/clients", &token, None).status
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 200);
    }
}

struct PgSubject {
    subject: Subject,
    pg: PrivatePostgres,
    _home: tempfile::TempDir,
}

/// A private PostgreSQL and a server on it (through `relay` when given).
/// None when this is not the PostgreSQL pass.
fn pg_subject(test: &str, prefix: &str, relay: bool) -> Option<(PgSubject, Option<Relay>)> {
    postgres_or_skip(test)?;
    let pg = PrivatePostgres::start();
    let relay = relay.then(|| Relay::start(pg.port));
    let url = match &relay {
        Some(relay) => relay.url(crate::fault_env::APP_DB),
        None => pg.app_url(),
    };
    let home = tempfile::tempdir().unwrap();
    let subject = subject(&ServerOptions::new(url, home.path()), prefix);
    Some((
        PgSubject {
            subject,
            pg,
            _home: home,
        },
        relay,
    ))
}

impl PgSubject {
    fn check_store(&self, case: &str, seen: &[Observation]) {
        let mut conn = self.pg.conn(crate::fault_env::APP_DB);
        assert_creates_match_the_store(case, &mut conn, seen);
    }
}

#[test]
fn faults_postgres_restart_under_load_answers_503_then_heals() {
    let Some((s, _)) = pg_subject(
        "faults_postgres_restart_under_load_answers_503_then_heals",
        "pg-restart",
        false,
    ) else {
        return;
    };
    let seen = through("postgres restart", &s.subject, false, || {
        s.pg.restart();
        Instant::now()
    });
    s.check_store("postgres restart", &seen);
}

#[test]
fn faults_sessions_terminated_while_connections_are_refused_answer_503_then_heal() {
    let Some((s, _)) = pg_subject(
        "faults_sessions_terminated_while_connections_are_refused_answer_503_then_heal",
        "pg-terminate",
        false,
    ) else {
        return;
    };
    let mut admin_conn = s.pg.conn("postgres");
    let mut seen = Vec::new();
    // The original bug depended on which pooled connections were touched:
    // repeat with a warm pool each time.
    for round in 0..3 {
        warm_pool(&s.subject, 8);
        let case = format!("sessions terminated, round {round}");
        seen.extend(through(&case, &s.subject, true, || {
            admin_conn
                .batch_execute(&format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                    crate::fault_env::APP_DB
                ))
                .unwrap();
            s.pg.terminate_app_sessions(&mut admin_conn);
            // Longer than the pool's 2 s checkout wait.
            std::thread::sleep(Duration::from_secs(3));
            admin_conn
                .batch_execute(&format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                    crate::fault_env::APP_DB
                ))
                .unwrap();
            Instant::now()
        }));
    }
    s.check_store("sessions terminated", &seen);
}

#[test]
fn faults_a_tcp_cut_in_the_middle_of_transactions_answers_503_then_heals() {
    let Some((s, Some(relay))) = pg_subject(
        "faults_a_tcp_cut_in_the_middle_of_transactions_answers_503_then_heals",
        "pg-cut",
        true,
    ) else {
        return;
    };
    let mut locker = s.pg.conn(crate::fault_env::APP_DB);
    let seen = through("tcp cut mid-transaction", &s.subject, true, || {
        // Creates block inside their transactions on the lock; the cut
        // lands while they are open.
        locker
            .batch_execute("BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        relay.cut();
        locker.batch_execute("COMMIT").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        relay.restore();
        Instant::now()
    });
    s.check_store("tcp cut", &seen);
}

#[test]
fn faults_an_exhausted_pool_answers_503_at_checkout_then_heals() {
    let Some((s, _)) = pg_subject(
        "faults_an_exhausted_pool_answers_503_at_checkout_then_heals",
        "pg-exhausted",
        false,
    ) else {
        return;
    };
    let mut locker = s.pg.conn(crate::fault_env::APP_DB);
    let mut blocked = Vec::new();
    // Felt by somebody, checked below: whether the stream's own requests
    // or the blocked readers are the ones left waiting at checkout depends
    // on who got a connection first.
    let seen = through("pool exhausted", &s.subject, false, || {
        locker
            .batch_execute("BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        // More readers than the pool has connections: they block on the
        // lock holding every connection, and the stream's requests then
        // wait at checkout.
        for _ in 0..6 {
            let (address, token) = (
                s.subject.credentials.address.clone(),
                s.subject.credentials.admin_token.clone(),
            );
            blocked.push(std::thread::spawn(move || {
                admin(&address, "GET", "/admin/v1/clients", &token, None)
            }));
        }
        std::thread::sleep(Duration::from_secs(4));
        locker.batch_execute("COMMIT").unwrap();
        Instant::now()
    });
    let mut unavailable = seen.iter().filter(|o| o.answer.status == 503).count();
    for answer in blocked {
        let answer = answer.join().unwrap();
        assert!(
            matches!(answer.status, 200 | 503),
            "pool exhausted: {} {}",
            answer.status,
            answer.body
        );
        unavailable += usize::from(answer.status == 503);
    }
    // Six readers for four connections: at least two waited at checkout.
    assert!(
        unavailable >= 2,
        "pool exhausted: only {unavailable} request(s) met the exhausted pool"
    );
    s.check_store("pool exhausted", &seen);
}

#[test]
fn faults_statement_timeouts_answer_503_then_heal() {
    let Some((s, _)) = pg_subject(
        "faults_statement_timeouts_answer_503_then_heal",
        "pg-timeout",
        false,
    ) else {
        return;
    };
    let mut admin_conn = s.pg.conn("postgres");
    admin_conn
        .batch_execute(&format!(
            "ALTER DATABASE {} SET statement_timeout = '300ms'",
            crate::fault_env::APP_DB
        ))
        .unwrap();
    // New sessions take the setting: make the server reconnect.
    s.pg.terminate_app_sessions(&mut admin_conn);
    let mut locker = s.pg.conn(crate::fault_env::APP_DB);
    locker.batch_execute("SET statement_timeout = 0").unwrap();
    let seen = through("statement timeout", &s.subject, true, || {
        locker
            .batch_execute("BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        locker.batch_execute("COMMIT").unwrap();
        Instant::now()
    });
    s.check_store("statement timeout", &seen);
}

#[test]
fn faults_a_database_dropped_and_recreated_empty_answers_503_and_says_why() {
    let Some((mut s, _)) = pg_subject(
        "faults_a_database_dropped_and_recreated_empty_answers_503_and_says_why",
        "pg-dropped",
        false,
    ) else {
        return;
    };
    let traffic = Traffic::start(&s.subject.credentials);
    std::thread::sleep(Duration::from_millis(400));
    let db = crate::fault_env::APP_DB;
    s.pg.execute("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    s.pg.execute("postgres", &format!("CREATE DATABASE {db}"));
    let recreated = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let seen = traffic.stop();
    assert_only_success_or_503("database recreated empty", &seen);
    let late_successes: Vec<_> = seen
        .iter()
        .filter(|o| o.started > recreated + Duration::from_millis(500))
        .filter(|o| o.answer.status != 503)
        .collect();
    assert!(
        late_successes.is_empty(),
        "an empty database cannot serve: {late_successes:?}"
    );
    let server = &mut s.subject.server;
    let ready = get(&server.address, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_store_free_endpoints_answer(server);
    assert!(server.is_running(), "the server must not crash");
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("does not exist")),
        "a log line names the cause:\n{log}"
    );
    eprintln!("FAULT database recreated empty: {}", summary(&seen));
}

/// A SQLite server (subprocess) in `home`, optionally as `nobody`.
fn sqlite_options(home: &Path, db_dir: &Path) -> ServerOptions {
    ServerOptions::new(
        format!("sqlite://{}", db_dir.join("keyward.db").display()),
        home,
    )
}

fn sqlite_check_store(case: &str, db_dir: &Path, seen: &[Observation]) {
    let mut conn = connect(&format!("sqlite://{}", db_dir.join("keyward.db").display()))
        .expect("sqlite store");
    assert_creates_match_the_store(case, &mut conn, seen);
}

/// Read-only: root ignores file modes, so the server runs as `nobody`. A
/// SQLite connection keeps the mode it was opened with, so the fault is a
/// restart on a file made read-only; writes must then fail with 503, reads
/// keep working, and making it writable heals without another restart.
#[test]
fn faults_sqlite_read_only_database_answers_503_to_writes_then_heals() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let db_dir = home.path().join("data");
    let mut options = sqlite_options(home.path(), &db_dir);
    options.as_nobody = true;
    let mut first = subject(&options, "sqlite-ro");
    first.server.signal("TERM");
    first
        .server
        .wait_exit(Duration::from_secs(15))
        .expect("server stopped");
    // The -wal and -shm files too: SQLite creates them with the main
    // file's mode, and a read-only -shm keeps every connection read-only.
    let set_mode = |mode: u32| {
        for entry in std::fs::read_dir(&db_dir).unwrap().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("keyward.db")
            {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))
                    .unwrap();
            }
        }
    };
    set_mode(0o444);
    let server = ServerProcess::spawn(&options);
    // The issuer is the address: tokens of the first run are not for this one.
    let second = Subject {
        credentials: Credentials {
            address: server.address.clone(),
            admin_token: server.admin_token(),
            ..first.credentials
        },
        server,
    };
    let seen = through("sqlite read-only", &second, true, || {
        std::thread::sleep(Duration::from_secs(2));
        set_mode(0o644);
        Instant::now()
    });
    assert!(
        seen.iter()
            .any(|o| o.kind == crate::fault_env::Kind::AdminCreate && o.answer.status == 503),
        "creates met the read-only file"
    );
    sqlite_check_store("sqlite read-only", &db_dir, &seen);
}

#[test]
fn faults_sqlite_disk_full_answers_503_then_heals() {
    let home = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(4 * 1024);
    let subject = subject(&sqlite_options(home.path(), disk.path()), "sqlite-full");
    let filler = disk.path().join("filler");
    let seen = through("sqlite disk full", &subject, true, || {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last bytes one at a time, so not a page is left.
        while file.write_all(&[0]).is_ok() {}
        std::thread::sleep(Duration::from_secs(3));
        drop(file);
        std::fs::remove_file(&filler).unwrap();
        Instant::now()
    });
    sqlite_check_store("sqlite disk full", disk.path(), &seen);
}

#[test]
fn faults_sqlite_locked_by_another_process_beyond_the_busy_timeout_answers_503_then_heals() {
    let home = tempfile::tempdir().unwrap();
    let db_dir = home.path().join("data");
    let subject = subject(&sqlite_options(home.path(), &db_dir), "sqlite-locked");
    let mut locker = connect(&format!("sqlite://{}", db_dir.join("keyward.db").display()))
        .expect("sqlite store");
    let seen = through("sqlite locked", &subject, true, || {
        locker.batch_execute("BEGIN EXCLUSIVE").unwrap();
        // Longer than the server's 5 s busy timeout.
        std::thread::sleep(Duration::from_secs(7));
        locker.batch_execute("COMMIT").unwrap();
        Instant::now()
    });
    drop(locker);
    sqlite_check_store("sqlite locked", &db_dir, &seen);
}

/// Polls `check` every 10 ms until it holds, at most `limit`; how long it took.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn channel_of(address: &str) -> String {
    get(address, "/readyz").json()["change_channel"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Behind PgBouncer in transaction mode: nodes start together (migrations
/// under a transaction-scoped lock), every endpoint works without named
/// prepared statements, and the change channel, on a direct connection,
/// carries a disable to the other node within 1 s. A node whose listener
/// goes through the pooler too never trusts a channel that delivers nothing.
#[test]
fn faults_behind_pgbouncer_in_transaction_mode_every_endpoint_works_and_changes_propagate() {
    if postgres_or_skip(
        "faults_behind_pgbouncer_in_transaction_mode_every_endpoint_works_and_changes_propagate",
    )
    .is_none()
    {
        return;
    }
    let pg = PrivatePostgres::start();
    let bouncer = crate::fault_env::PgBouncer::start(&pg);
    let keys = tempfile::tempdir().unwrap();
    let homes: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let options = |home: &tempfile::TempDir, direct_listener: bool| {
        let mut options = ServerOptions::new(bouncer.url(), home.path())
            .env("KEYWARD_DB_STATEMENT_CACHE", "false")
            .env("KEYWARD_KEYS_DIR", &keys.path().display().to_string())
            .env("KEYWARD_ISSUER", "https://auth.bouncer.test");
        if direct_listener {
            options = options.env("KEYWARD_LISTEN_DATABASE_URL", &pg.app_url());
        }
        options
    };
    // Both start at once on the empty database.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| ServerProcess::spawn(&options(&homes[0], true)));
        let b = scope.spawn(|| ServerProcess::spawn(&options(&homes[1], true)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let written: Vec<&ServerProcess> = [&a, &b]
        .into_iter()
        .filter(|n| !n.admin_id.is_empty())
        .collect();
    assert_eq!(written.len(), 1, "one node bootstrapped the admin");
    let (admin_id, admin_secret) = (written[0].admin_id.clone(), written[0].admin_secret.clone());
    for node in [&a, &b] {
        assert!(
            within(Duration::from_secs(10), || channel_of(&node.address)
                == "up")
            .is_some(),
            "the direct change channel comes up"
        );
    }

    // Every endpoint, on both nodes.
    let admin_token = {
        let answer = a.token(&admin_id, &admin_secret);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["access_token"].as_str().unwrap().to_string()
    };
    let create = |node: &ServerProcess, name: &str| {
        let created = admin(
            &node.address,
            "POST",
            "/admin/v1/clients",
            &admin_token,
            Some(json!({"name": name, "role": "reader", "can_renew": true})),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        let created = created.json();
        (
            created["client_id"].as_str().unwrap().to_string(),
            created["client_secret"].as_str().unwrap().to_string(),
        )
    };
    let (id, secret) = create(&b, "bouncer-1");
    let issued = a.token(&id, &secret);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let access = issued.json()["access_token"].as_str().unwrap().to_string();
    let admin_basic = crate::fault_env::basic_auth(&admin_id, &admin_secret);
    let introspected = crate::fault_env::form(
        &b.address,
        "/oauth/introspect",
        &admin_basic,
        &[("token", &access)],
    );
    assert_eq!(introspected.json()["active"], true, "{}", introspected.body);
    let renewed = crate::fault_env::form(
        &b.address,
        "/api/v1/token/renew",
        &crate::fault_env::bearer(&access),
        &[],
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let revoked = crate::fault_env::form(
        &a.address,
        "/oauth/revoke",
        &crate::fault_env::basic_auth(&id, &secret),
        &[("token", &access)],
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let seen = within(Duration::from_secs(1), || {
        let after = crate::fault_env::form(
            &b.address,
            "/oauth/introspect",
            &admin_basic,
            &[("token", &access)],
        );
        after.json()["active"] == false
    });
    assert!(seen.is_some(), "revoked on A, seen on B within 1 s");
    let listed = admin(&b.address, "GET", "/admin/v1/clients", &admin_token, None);
    assert_eq!(listed.status, 200, "{}", listed.body);

    // A disable on one node reaches the other's cache within 1 s.
    let (id2, secret2) = create(&a, "bouncer-2");
    for _ in 0..2 {
        assert_eq!(b.token(&id2, &secret2).status, 200);
    }
    let disabled = admin(
        &a.address,
        "POST",
        &format!("/admin/v1/clients/{id2}/disable"),
        &admin_token,
        None,
    );
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    let seen_in = within(Duration::from_secs(3), || {
        b.token(&id2, &secret2).status == 401
    });
    eprintln!("FAULT pgbouncer: disable seen by the other node in {seen_in:?}");
    assert!(
        seen_in.is_some_and(|t| t < Duration::from_secs(1)),
        "disable on A seen on B within 1 s: {seen_in:?}"
    );

    // A node whose listener goes through the pooler: LISTEN there delivers
    // nothing, so its cache must never be live.
    let c = ServerProcess::spawn(&options(&homes[2], false));
    let (id3, secret3) = create(&a, "bouncer-3");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_ne!(channel_of(&c.address), "up", "a deaf channel reported up");
        assert_eq!(c.token(&id3, &secret3).status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let disabled = admin(
        &a.address,
        "POST",
        &format!("/admin/v1/clients/{id3}/disable"),
        &admin_token,
        None,
    );
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    let answer = c.token(&id3, &secret3);
    assert_eq!(
        answer.status, 401,
        "a node without a channel reads the store: {}",
        answer.body
    );
}

/// The store of a crash test: a private PostgreSQL in the PostgreSQL pass,
/// else a SQLite file.
struct Store {
    pg: Option<PrivatePostgres>,
    home: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        Store {
            pg: using_postgres().then(PrivatePostgres::start),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.app_url(),
            None => format!(
                "sqlite://{}",
                self.home.path().join("data/keyward.db").display()
            ),
        }
    }

    fn options(&self) -> ServerOptions {
        ServerOptions::new(self.url(), self.home.path())
    }

    fn conn(&self) -> keyward::store::AnyConnection {
        connect(&self.url()).expect("store connection")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    CreateSecretClient,
    CreateTokenClient,
    NewSecret,
    Reissue,
    RevokeClient,
    RevokeAccessToken,
    RenewApiToken,
    RenewAccessToken,
}

/// What the caller did and saw: `Some(true)` answered 2xx, `None` no
/// answer (in flight when the server died: either outcome is allowed).
#[derive(Debug, Clone)]
struct Done {
    change: Change,
    target: String,
    outcome: Option<bool>,
    /// The secret or token a 2xx answer handed out.
    credential: Option<String>,
}

fn outcome(answer: &crate::fault_env::Answer) -> Option<bool> {
    match answer.status {
        0 => None,
        s => Some((200..300).contains(&s)),
    }
}

/// `kill -9` in the middle of a stream of admin changes and renewals; on
/// restart every change that answered 2xx is there with its audit entry,
/// nothing the caller did not ask for is, and each change in flight at the
/// kill is there with its audit entry or not at all.
#[test]
fn faults_kill_9_mid_stream_loses_no_acknowledged_change_and_leaves_no_half_change() {
    use diesel::prelude::*;
    use keyward::store::schema::revoked_access_tokens as revoked;
    use keyward::store::schema::{api_tokens, audit_events, client_secrets, clients};

    let store = Store::new();
    let mut server = ServerProcess::spawn(&store.options());
    let address = server.address.clone();
    let admin_token = server.admin_token();
    let bootstrap_admin = server.admin_id.clone();
    let make = |name: &str, kind: &str| {
        let created = admin(
            &address,
            "POST",
            "/admin/v1/clients",
            &admin_token,
            Some(json!({"name": name, "role": "reader", "kind": kind, "can_renew": true})),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        let created = created.json();
        let credential = created["client_secret"]
            .as_str()
            .or(created["token"].as_str())
            .unwrap()
            .to_string();
        (
            created["client_id"].as_str().unwrap().to_string(),
            credential,
        )
    };
    // Fixed clients for the renewal stream and the access-token revocations.
    let (renew_api_id, renew_api_token) = make("crash-renew-api", "api_token");
    let (renew_at_id, renew_at_secret) = make("crash-renew-at", "client_credentials");
    let renew_access = {
        let answer = crate::fault_env::token(&address, &renew_at_id, &renew_at_secret);
        answer.json()["access_token"].as_str().unwrap().to_string()
    };

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (admin_done, renew_done) = std::thread::scope(|scope| {
        let admin_stream = scope.spawn(|| {
            let mut done: Vec<Done> = Vec::new();
            let mut secret_clients: Vec<String> = Vec::new();
            let mut token_clients: Vec<String> = Vec::new();
            for n in 0..2_000 {
                let (change, target, answer) = match n % 6 {
                    0 | 3 => {
                        let kind = if n % 6 == 0 {
                            "client_credentials"
                        } else {
                            "api_token"
                        };
                        let name = format!("crash-{n}");
                        let answer = admin(
                            &address,
                            "POST",
                            "/admin/v1/clients",
                            &admin_token,
                            Some(json!({"name": name, "role": "reader", "kind": kind})),
                        );
                        if answer.status == 201 {
                            let id = answer.json()["client_id"].as_str().unwrap().to_string();
                            if n % 6 == 0 {
                                secret_clients.push(id)
                            } else {
                                token_clients.push(id)
                            }
                        }
                        let change = if n % 6 == 0 {
                            Change::CreateSecretClient
                        } else {
                            Change::CreateTokenClient
                        };
                        (change, name, answer)
                    }
                    1 if !secret_clients.is_empty() => {
                        let id = secret_clients[n % secret_clients.len()].clone();
                        let path = format!("/admin/v1/clients/{id}/secret");
                        (
                            Change::NewSecret,
                            id,
                            admin(&address, "POST", &path, &admin_token, None),
                        )
                    }
                    4 if !token_clients.is_empty() => {
                        let id = token_clients[n % token_clients.len()].clone();
                        let path = format!("/admin/v1/clients/{id}/tokens");
                        (
                            Change::Reissue,
                            id,
                            admin(&address, "POST", &path, &admin_token, None),
                        )
                    }
                    5 if secret_clients.len() > 2 => {
                        // The oldest secret client goes, never to be used again.
                        let id = secret_clients.remove(0);
                        let path = format!("/admin/v1/clients/{id}/revoke");
                        (
                            Change::RevokeClient,
                            id,
                            admin(&address, "POST", &path, &admin_token, None),
                        )
                    }
                    _ => {
                        let issued =
                            crate::fault_env::token(&address, &renew_at_id, &renew_at_secret);
                        if issued.status == 0 {
                            break;
                        }
                        let token = issued.json()["access_token"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let answer = crate::fault_env::form(
                            &address,
                            "/oauth/revoke",
                            &crate::fault_env::basic_auth(&renew_at_id, &renew_at_secret),
                            &[("token", &token)],
                        );
                        (Change::RevokeAccessToken, token, answer)
                    }
                };
                let credential = match change {
                    Change::NewSecret => {
                        answer.json()["client_secret"].as_str().map(str::to_string)
                    }
                    _ => None,
                };
                let outcome = outcome(&answer);
                assert!(
                    outcome != Some(false),
                    "{change:?} answered {}: {}",
                    answer.status,
                    answer.body
                );
                done.push(Done {
                    change,
                    target,
                    outcome,
                    credential,
                });
                if outcome.is_none() || stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            done
        });
        let renew_stream = scope.spawn(|| {
            let mut done: Vec<Done> = Vec::new();
            for n in 0..4_000 {
                let (change, target, token) = if n % 2 == 0 {
                    (Change::RenewApiToken, &renew_api_id, &renew_api_token)
                } else {
                    (Change::RenewAccessToken, &renew_at_id, &renew_access)
                };
                let answer = crate::fault_env::form(
                    &address,
                    "/api/v1/token/renew",
                    &crate::fault_env::bearer(token),
                    &[],
                );
                let outcome = outcome(&answer);
                assert!(outcome != Some(false), "{change:?}: {}", answer.body);
                done.push(Done {
                    change,
                    target: target.clone(),
                    outcome,
                    credential: None,
                });
                if outcome.is_none() || stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            done
        });
        std::thread::sleep(Duration::from_millis(1500));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (admin_stream.join().unwrap(), renew_stream.join().unwrap())
    });
    let all: Vec<Done> = admin_done.iter().chain(&renew_done).cloned().collect();
    assert!(all.len() > 20, "the stream ran: {} changes", all.len());
    eprintln!(
        "FAULT kill -9: {} changes acknowledged, {} in flight",
        all.iter().filter(|d| d.outcome == Some(true)).count(),
        all.iter().filter(|d| d.outcome.is_none()).count()
    );

    let restarted = ServerProcess::spawn(&store.options());
    let mut conn = store.conn();
    // (acknowledged, in flight) for a change and target.
    let asked = |change: Change, target: &str| -> (i64, i64) {
        let of = |o: Option<bool>| {
            all.iter()
                .filter(|d| d.change == change && d.target == target && d.outcome == o)
                .count() as i64
        };
        (of(Some(true)), of(None))
    };
    let audits = |conn: &mut keyward::store::AnyConnection, action: &str, target: &str| -> i64 {
        audit_events::table
            .filter(audit_events::action.eq(action))
            .filter(audit_events::target.eq(target))
            .count()
            .get_result(conn)
            .unwrap()
    };
    let in_range = |what: &str, found: i64, (acked, in_flight): (i64, i64)| {
        assert!(
            (acked..=acked + in_flight).contains(&found),
            "{what}: {found} in the store, {acked} acknowledged, {in_flight} in flight"
        );
    };

    // Clients: exactly those asked for, each created once and audited once.
    let rows: Vec<(String, String, String)> = clients::table
        .select((clients::client_id, clients::name, clients::status))
        .load(&mut conn)
        .unwrap();
    for (id, name, status) in &rows {
        if name.starts_with("crash-") && !name.starts_with("crash-renew") {
            assert!(
                all.iter().any(|d| {
                    matches!(
                        d.change,
                        Change::CreateSecretClient | Change::CreateTokenClient
                    ) && &d.target == name
                }),
                "client {name} was never asked for"
            );
        } else {
            assert!(
                name.starts_with("crash-renew") || id == &bootstrap_admin,
                "unexpected client {name}"
            );
        }
        assert_eq!(
            audits(&mut conn, "client.create", id),
            1,
            "{name} audited once"
        );
        // Every change to it, counted against what the caller saw.
        in_range(
            &format!("secrets rotated of {name}"),
            audits(&mut conn, "client.secret.rotate", id),
            asked(Change::NewSecret, id),
        );
        in_range(
            &format!("revocations of {name}"),
            audits(&mut conn, "client.revoke", id),
            asked(Change::RevokeClient, id),
        );
        let revoked_now = i64::from(status == "revoked");
        assert_eq!(
            revoked_now,
            audits(&mut conn, "client.revoke", id),
            "{name}: status {status} and its audit agree"
        );
        let reissues = audits(&mut conn, "client.token.reissue", id);
        in_range(
            &format!("reissues of {name}"),
            reissues,
            asked(Change::Reissue, id),
        );
        let renewals = audits(&mut conn, "token.renew", id);
        let token_rows: i64 = api_tokens::table
            .filter(api_tokens::client_id.eq(id))
            .count()
            .get_result(&mut conn)
            .unwrap();
        let secret_rows: i64 = client_secrets::table
            .filter(client_secrets::client_id.eq(id))
            .count()
            .get_result(&mut conn)
            .unwrap();
        if id == &renew_at_id {
            in_range(
                "access-token renewals",
                renewals,
                asked(Change::RenewAccessToken, id),
            );
        } else if id == &renew_api_id {
            in_range(
                "API-token renewals",
                renewals,
                asked(Change::RenewApiToken, id),
            );
        }
        let is_token_client = token_rows > 0;
        if is_token_client {
            // One token at creation, one per reissue and API renewal.
            assert_eq!(
                token_rows,
                1 + reissues + renewals,
                "{name}: api_tokens rows"
            );
            assert_eq!(secret_rows, 0, "{name}: an api_token client has no secret");
        } else if status != "revoked" {
            // Every rotation here has no grace: one secret at a time.
            assert_eq!(secret_rows, 1, "{name}: client_secrets rows");
        }
    }
    for d in all.iter().filter(|d| d.outcome == Some(true)) {
        if matches!(
            d.change,
            Change::CreateSecretClient | Change::CreateTokenClient
        ) {
            assert!(
                rows.iter().any(|(_, name, _)| name == &d.target),
                "{} lost",
                d.target
            );
        }
    }
    // Access-token revocations: each acknowledged one is there, audited.
    let revoked_rows: i64 = revoked::table
        .filter(revoked::client_id.eq(&renew_at_id))
        .count()
        .get_result(&mut conn)
        .unwrap();
    let revoked_audits = audits(&mut conn, "token.revoke", &renew_at_id);
    assert_eq!(
        revoked_rows, revoked_audits,
        "revoked jtis and their audit entries"
    );
    let (acked, in_flight) = all
        .iter()
        .filter(|d| d.change == Change::RevokeAccessToken)
        .fold((0, 0), |(a, f), d| match d.outcome {
            Some(true) => (a + 1, f),
            _ => (a, f + 1),
        });
    in_range("access tokens revoked", revoked_rows, (acked, in_flight));

    // The last secret each live client was handed still works.
    for d in all.iter().rev().filter(|d| d.change == Change::NewSecret) {
        let later_in_flight = all
            .iter()
            .any(|o| o.change == Change::NewSecret && o.target == d.target && o.outcome.is_none());
        let revoked = rows
            .iter()
            .any(|(id, _, s)| id == &d.target && s == "revoked");
        if d.outcome == Some(true) && !later_in_flight && !revoked {
            let secret = d.credential.as_deref().unwrap();
            let newest = all
                .iter()
                .rev()
                .find(|o| o.change == Change::NewSecret && o.target == d.target)
                .and_then(|o| o.credential.as_deref());
            if newest == Some(secret) {
                assert_eq!(restarted.token(&d.target, secret).status, 200);
            }
        }
    }
    assert_eq!(restarted.token(&renew_at_id, &renew_at_secret).status, 200);
}

/// Holds the store's write lock (SQLite) or the clients table (PostgreSQL)
/// until `release`.
fn hold_lock(store: &Store) -> keyward::store::AnyConnection {
    let mut conn = store.conn();
    let sql = match store.pg {
        Some(_) => "BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE",
        None => "BEGIN EXCLUSIVE",
    };
    conn.batch_execute(sql).unwrap();
    conn
}

fn release(mut conn: keyward::store::AnyConnection) {
    conn.batch_execute("COMMIT").unwrap();
}

fn listeners(store: &Store) -> i64 {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let Some(pg) = &store.pg else { return 0 };
    let keyward::store::AnyConnection::Postgresql(mut conn) = pg.conn("postgres") else {
        unreachable!()
    };
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'keyward-listener-%'",
    )
    .get_result::<Count>(&mut conn)
    .unwrap()
    .n
}

fn create_in_background(
    server: &ServerProcess,
    token: &str,
    name: &str,
) -> std::thread::JoinHandle<crate::fault_env::Answer> {
    let (address, token, name) = (server.address.clone(), token.to_string(), name.to_string());
    std::thread::spawn(move || {
        admin(
            &address,
            "POST",
            "/admin/v1/clients",
            &token,
            Some(json!({"name": name, "role": "reader"})),
        )
    })
}

/// SIGTERM: requests in flight finish, `last_used_at` is written, the change
/// listener's session is closed, and the process is gone within 10 s.
#[test]
fn faults_sigterm_finishes_in_flight_requests_flushes_last_used_and_exits_within_10s() {
    use diesel::prelude::*;
    use keyward::store::schema::clients;
    let store = Store::new();
    let s = subject(&store.options(), "sigterm");
    let mut server = s.server;
    if store.pg.is_some() {
        assert!(
            within(Duration::from_secs(10), || listeners(&store) == 1).is_some(),
            "the listener's session is open"
        );
    }
    let (id, secret) = (&s.credentials.client_id, &s.credentials.client_secret);
    assert_eq!(server.token(id, secret).status, 200);
    let lock = hold_lock(&store);
    let in_flight = create_in_background(&server, &s.credentials.admin_token, "sigterm-in-flight");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(700));
    release(lock);
    let answer = in_flight.join().unwrap();
    assert_eq!(
        answer.status, 201,
        "the request in flight finished: {}",
        answer.body
    );
    let status = server
        .wait_exit(Duration::from_secs(10).saturating_sub(signalled.elapsed()))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", server.log_text()));
    eprintln!(
        "FAULT sigterm: exited in {:?} ({status})",
        signalled.elapsed()
    );
    assert!(status.success(), "{status}:\n{}", server.log_text());
    let last_used: Option<i64> = clients::table
        .find(id)
        .select(clients::last_used_at)
        .first(&mut store.conn())
        .unwrap();
    assert!(last_used.is_some(), "last_used_at flushed at shutdown");
    if store.pg.is_some() {
        assert!(
            within(Duration::from_secs(2), || listeners(&store) == 0).is_some(),
            "the listener's session is closed"
        );
    }
}

/// Neither a second SIGTERM nor a request stuck on a lock that is never
/// released keeps the process alive past 15 s.
#[test]
fn faults_a_second_sigterm_with_a_request_stuck_on_a_lock_still_exits_within_15s() {
    let store = Store::new();
    let s = subject(&store.options(), "sigterm-twice");
    let mut server = s.server;
    let lock = hold_lock(&store);
    let stuck = create_in_background(&server, &s.credentials.admin_token, "sigterm-stuck");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    let exited = server.wait_exit(Duration::from_secs(15));
    eprintln!("FAULT second sigterm: exited in {:?}", signalled.elapsed());
    release(lock);
    assert!(
        exited.is_some(),
        "still running 15 s after SIGTERM:\n{}",
        server.log_text()
    );
    let answer = stuck.join().unwrap();
    assert!(
        matches!(answer.status, 0 | 503),
        "the stuck request got no answer or a 503: {} {}",
        answer.status,
        answer.body
    );
}

/// A database that stops answering (the relay passes nothing, closes
/// nothing) does not keep the process alive past 15 s after SIGTERM.
#[test]
fn faults_sigterm_while_the_database_hangs_still_exits_within_15s() {
    let Some((s, Some(relay))) = pg_subject(
        "faults_sigterm_while_the_database_hangs_still_exits_within_15s",
        "sigterm-hang",
        true,
    ) else {
        return;
    };
    let mut server = s.subject.server;
    warm_pool_at(&server.address, &s.subject.credentials.admin_token, 4);
    relay.hang();
    let stuck = create_in_background(&server, &s.subject.credentials.admin_token, "hang-stuck");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    let exited = server.wait_exit(Duration::from_secs(15));
    eprintln!(
        "FAULT sigterm, database hanging: exited in {:?}",
        signalled.elapsed()
    );
    assert!(
        exited.is_some(),
        "still running 15 s after SIGTERM:\n{}",
        server.log_text()
    );
    let _ = stuck.join();
    drop(s.pg);
}

fn warm_pool_at(address: &str, token: &str, n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (address, token) = (address.to_string(), token.to_string());
            std::thread::spawn(move || {
                admin(&address, "GET", "/admin/v1/clients", &token, None).status
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 200);
    }
}

/// A client assertion through a store outage: 503 (never a 401 that blames
/// the valid assertion) while the store cannot take its jti, and the same
/// assertion accepted once the store is back, since an id is spent only
/// when its insert commits.
fn assertion_through(
    server: &crate::fault_env::ServerProcess,
    fault: impl FnOnce(),
    heal: impl FnOnce(),
) {
    use crate::helpers::Signer;
    let admin_token = server.admin_token();
    let signer = Signer::new(jsonwebtoken::Algorithm::EdDSA, "k1");
    let created = admin(
        &server.address,
        "POST",
        "/admin/v1/clients",
        &admin_token,
        Some(json!({"name": "signer", "role": "reader",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": Signer::jwks(&[&signer])})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["client_id"].as_str().unwrap().to_string();
    let now = chrono::Utc::now().timestamp();
    let assertion = signer.sign(&json!({"iss": id, "sub": id, "aud": server.address,
                                        "iat": now, "exp": now + 300, "jti": "through-the-outage"}));
    let present = || {
        let result = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build()
            .post(&format!("{}/oauth/token", server.address))
            .send_form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ]);
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("no answer: {e}"),
        };
        let status = response.status();
        (status, response.into_string().unwrap_or_default())
    };
    fault();
    let (status, body) = present();
    assert_eq!(status, 503, "while the store is down: {body}");
    assert!(body.contains("temporarily_unavailable"), "{body}");
    heal();
    let healed = within(HEAL_LIMIT, || present().0 == 200);
    assert!(
        healed.is_some(),
        "the same assertion after the store came back"
    );
    assert_eq!(present().0, 401, "and then it is spent");
}

#[test]
fn faults_a_client_assertion_while_postgres_is_cut_off_answers_503_and_keeps_its_jti() {
    let Some((s, Some(relay))) = pg_subject(
        "faults_a_client_assertion_while_postgres_is_cut_off_answers_503_and_keeps_its_jti",
        "pg-assertion",
        true,
    ) else {
        return;
    };
    assertion_through(&s.subject.server, || relay.cut(), || relay.restore());
}

#[test]
fn faults_a_client_assertion_while_sqlite_is_locked_answers_503_and_keeps_its_jti() {
    let home = tempfile::tempdir().unwrap();
    let db_dir = home.path().join("data");
    let subject = subject(&sqlite_options(home.path(), &db_dir), "sqlite-assertion");
    let locker = std::cell::RefCell::new(
        connect(&format!("sqlite://{}", db_dir.join("keyward.db").display()))
            .expect("sqlite store"),
    );
    assertion_through(
        &subject.server,
        || {
            locker
                .borrow_mut()
                .batch_execute("BEGIN EXCLUSIVE")
                .unwrap()
        },
        || locker.borrow_mut().batch_execute("COMMIT").unwrap(),
    );
}

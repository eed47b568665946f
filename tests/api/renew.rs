use keyward::service::durations::DurationSpec;

use crate::helpers::{jwt_parts, spawn_app, spawn_app_with, Auth};

#[test]
fn renewing_an_access_token_keeps_its_grant_and_the_old_one_stays_valid() {
    let app = spawn_app();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let (client, secret) = app.new_client("admin", |c| {
        c.can_renew = Some(true);
        c.tenant_id = Some(vendor.clone());
        c.scopes = Some(vec!["clients:read".into(), "introspect".into()]);
        c.audience = Some(vec![
            "https://a.example.com".into(),
            "https://b.example.com".into(),
        ]);
        c.access_token_ttl = Some(900);
    });
    let old = app.token_for(
        &client.client_id,
        &secret,
        &[
            ("scope", "introspect"),
            ("audience", "https://b.example.com"),
            ("tenant", &customer),
        ],
    );
    for method in ["GET", "POST"] {
        let response = if method == "GET" {
            app.get("/api/v1/token/renew", Auth::Bearer(&old))
        } else {
            app.post_form("/api/v1/token/renew", &[], Auth::Bearer(&old))
        };
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let body = response.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "introspect");
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
        let new = body["access_token"].as_str().unwrap();
        let (_, old_claims) = jwt_parts(&old);
        let (_, claims) = jwt_parts(new);
        for field in ["scope", "aud", "tenant", "role", "sub", "client_id"] {
            assert_eq!(claims[field], old_claims[field], "{field}");
        }
        assert_ne!(claims["jti"], old_claims["jti"]);
        assert_eq!(app.introspect(new)["active"], true);
        assert_eq!(
            app.introspect(&old)["active"],
            true,
            "the old token stays valid"
        );
    }
}

#[test]
fn renewing_an_api_token_issues_a_new_string_with_a_fresh_lifetime() {
    let app = spawn_app();
    let (client, old) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.token_lifetime = Some(DurationSpec::Named("7d".into()));
    });
    // Ardexa's documented header form.
    let response = app.get(
        "/api/v1/token/renew",
        Auth::Header(&format!("bearer: {old}")),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    let new = body["access_token"].as_str().unwrap();
    assert!(new.starts_with("kwt_"));
    assert_ne!(new, old);
    assert_eq!(body["expires_in"], 7 * 86_400);
    assert_eq!(body["scope"], "read");
    let introspected = app.introspect(new);
    assert_eq!(introspected["token_kind"], "api_token");
    assert_eq!(introspected["client_id"], client.client_id);
    assert_eq!(app.introspect(&old)["active"], true);
}

#[test]
fn renewal_never_runs_past_the_clients_expiry() {
    let app = spawn_app();
    let (_, token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.expires_in = Some(DurationSpec::Named("14d".into()));
        c.token_lifetime = Some(DurationSpec::Named("1y".into()));
    });
    let body = app.get("/api/v1/token/renew", Auth::Bearer(&token)).json();
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(
        expires_in <= 14 * 86_400 && expires_in > 14 * 86_400 - 10,
        "{expires_in}"
    );
}

#[test]
fn renewal_not_allowed_is_403_access_denied() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    app.get("/api/v1/token/renew", Auth::Bearer(&token))
        .assert_error(403, "access_denied");
    let (_, api_token) = app.new_client("reader", |c| c.kind = Some("api_token".into()));
    app.get("/api/v1/token/renew", Auth::Bearer(&api_token))
        .assert_error(403, "access_denied");
}

#[test]
fn no_bad_or_revoked_tokens_are_401_invalid_token() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let token = app.token_for(&client.client_id, &secret, &[]);
    let response = app.get("/api/v1/token/renew", Auth::None);
    response.assert_error(401, "invalid_token");
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    app.get("/api/v1/token/renew", Auth::Bearer("garbage"))
        .assert_error(401, "invalid_token");
    app.get("/api/v1/token/renew", Auth::Header("Basic abc"))
        .assert_error(401, "invalid_token");
    app.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&client.client_id, &secret),
    );
    app.get("/api/v1/token/renew", Auth::Bearer(&token))
        .assert_error(401, "invalid_token");
}

#[test]
fn renewals_are_audited_and_checked_against_allowed_ips() {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (client, api_token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    let renew_from = |ip: &str| {
        app.request("GET", "/api/v1/token/renew")
            .bearer(&api_token)
            .forwarded_for(ip)
            .send()
    };
    renew_from("192.0.2.1").assert_error(401, "invalid_token");
    assert_eq!(renew_from("10.9.9.9").status, 200);
    let mut conn = app.conn();
    let renewals: Vec<Option<String>> = audit_events::table
        .filter(audit_events::action.eq("token.renew"))
        .select(audit_events::ip)
        .load(&mut conn)
        .unwrap();
    assert_eq!(renewals, vec![Some("10.9.9.9".to_string())]);
    let _ = client;
}

#[test]
fn renewing_an_access_token_from_an_address_outside_allowed_ips_is_refused() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.allowed_ips = Some(vec!["10.0.0.0/8".into()]);
    });
    let token = app
        .request("POST", "/oauth/token")
        .basic(&client.client_id, &secret)
        .forwarded_for("10.1.1.1")
        .send_form(&[("grant_type", "client_credentials")])
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    app.request("GET", "/api/v1/token/renew")
        .bearer(&token)
        .forwarded_for("192.0.2.9")
        .send()
        .assert_error(401, "invalid_token");
    assert_eq!(
        app.request("GET", "/api/v1/token/renew")
            .bearer(&token)
            .forwarded_for("10.2.2.2")
            .send()
            .status,
        200
    );
}

/// Renews `token` (its own bearer) and returns the new one; panics unless 200.
pub fn renewed(app: &crate::helpers::TestApp, token: &str) -> String {
    let response = app.get("/api/v1/token/renew", Auth::Bearer(token));
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn revoke(app: &crate::helpers::TestApp, token: &str) {
    let response = app.post_form(
        "/oauth/revoke",
        &[("token", token)],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    );
    assert_eq!(response.status, 200, "{}", response.body);
}

/// A renewable client of `kind` and its first token (an access token, or
/// the API token itself).
pub fn renewable(app: &crate::helpers::TestApp, kind: &str) -> String {
    if kind == "api_token" {
        let (_, token) = app.new_client("reader", |c| {
            c.kind = Some("api_token".into());
            c.can_renew = Some(true);
        });
        token
    } else {
        let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
        app.token_for(&client.client_id, &secret, &[])
    }
}

#[test]
fn a_renewal_racing_a_revocation_of_the_same_token_never_leaves_a_live_successor() {
    let app = spawn_app();
    for kind in ["access_token", "api_token"] {
        let mut issued = 0;
        for round in 0..20 {
            let a = renewable(&app, kind);
            let barrier = std::sync::Barrier::new(2);
            let successor = std::thread::scope(|s| {
                let renewal = s.spawn(|| {
                    barrier.wait();
                    app.get("/api/v1/token/renew", Auth::Bearer(&a))
                });
                s.spawn(|| {
                    barrier.wait();
                    revoke(&app, &a);
                });
                renewal.join().unwrap()
            });
            match successor.status {
                200 => {
                    issued += 1;
                    let b = successor.json()["access_token"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(
                        app.introspect(&b)["active"],
                        false,
                        "{kind} round {round}: a successor outlived the revocation"
                    );
                }
                401 => {
                    successor.assert_error(401, "invalid_token");
                }
                other => panic!("{kind} round {round}: {other} {}", successor.body),
            }
            assert_eq!(app.introspect(&a)["active"], false);
        }
        eprintln!("{kind}: {issued} of 20 renewals won the race");
    }
}

#[test]
fn a_renewal_does_not_carry_over_an_audience_removed_from_the_client() {
    let app = spawn_app();
    let actor = app.root_actor();
    let audiences = || {
        Some(vec![
            "https://a.example.com".to_string(),
            "https://b.example.com".to_string(),
        ])
    };
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.audience = audiences();
    });
    let (api_client, api_token) = app.new_client("reader", |c| {
        c.kind = Some("api_token".into());
        c.can_renew = Some(true);
        c.audience = audiences();
    });
    let narrow = app.token_for(
        &client.client_id,
        &secret,
        &[("audience", "https://a.example.com")],
    );
    let wide = app.token_for(&client.client_id, &secret, &[]);
    for id in [&client.client_id, &api_client.client_id] {
        let change = keyward::service::clients::ClientPatch {
            audience: Some(vec!["https://a.example.com".into()]),
            ..Default::default()
        };
        app.db
            .run_here(|conn| keyward::service::clients::update(conn, &actor, id, change))
            .unwrap();
    }
    app.get("/api/v1/token/renew", Auth::Bearer(&wide))
        .assert_error(403, "access_denied");
    app.get("/api/v1/token/renew", Auth::Bearer(&api_token))
        .assert_error(403, "access_denied");
    // An audience the client still has is carried over.
    let renewed_narrow = renewed(&app, &narrow);
    assert_eq!(jwt_parts(&renewed_narrow).1["aud"], "https://a.example.com");
}

#[test]
fn a_renewal_does_not_carry_over_a_tenant_moved_out_of_the_clients_subtree() {
    let app = spawn_app();
    let actor = app.root_actor();
    let vendor = app.create_tenant("vendor", None);
    let customer = app.create_tenant("customer", Some(&vendor));
    let elsewhere = app.create_tenant("elsewhere", None);
    let (client, secret) = app.new_client("reader", |c| {
        c.can_renew = Some(true);
        c.tenant_id = Some(vendor.clone());
    });
    let narrowed = app.token_for(&client.client_id, &secret, &[("tenant", &customer)]);
    let own = app.token_for(&client.client_id, &secret, &[]);
    // Still within: renewed with its tenant.
    let again = renewed(&app, &narrowed);
    assert_eq!(jwt_parts(&again).1["tenant"], customer.as_str());
    let change = keyward::service::tenants::TenantPatch {
        parent_id: Some(elsewhere.clone()),
        ..Default::default()
    };
    app.db
        .run_here(|conn| keyward::service::tenants::update(conn, &actor, &customer, change))
        .unwrap();
    app.get("/api/v1/token/renew", Auth::Bearer(&narrowed))
        .assert_error(403, "access_denied");
    app.get("/api/v1/token/renew", Auth::Bearer(&again))
        .assert_error(403, "access_denied");
    assert_eq!(
        app.get("/api/v1/token/renew", Auth::Bearer(&own)).status,
        200
    );
}

fn jti_of(token: &str) -> String {
    jwt_parts(token).1["jti"].as_str().unwrap().to_string()
}

/// The parent recorded for `jti` in its family row (None: no row).
fn recorded_parent(conn: &mut keyward::store::AnyConnection, jti: &str) -> Option<Option<String>> {
    use diesel::prelude::*;
    use keyward::store::schema::token_families;
    token_families::table
        .find(jti)
        .select(token_families::parent_id)
        .first(conn)
        .optional()
        .unwrap()
}

/// The details of every `token.renew` audit entry.
fn renewal_entries(conn: &mut keyward::store::AnyConnection) -> Vec<serde_json::Value> {
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    audit_events::table
        .filter(audit_events::action.eq("token.renew"))
        .select(audit_events::details)
        .load::<String>(conn)
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The `token.renew` entries that record `jti` as the new token.
fn entries_renewing_to<'e>(
    entries: &'e [serde_json::Value],
    jti: &str,
) -> Vec<&'e serde_json::Value> {
    entries.iter().filter(|e| e["jti"] == jti).collect()
}

#[test]
fn sixty_four_concurrent_renewals_each_record_their_own_parent_and_one_audit_entry() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let tokens: Vec<String> = (0..32)
        .map(|_| app.token_for(&client.client_id, &secret, &[]))
        .collect();
    // Each token renewed twice at once: a batch then names a parent twice.
    let olds: Vec<&String> = tokens.iter().chain(&tokens).collect();
    // On PostgreSQL these share commits: a batch that mixed up its rows
    // would give a successor the wrong parent or entry.
    let barrier = std::sync::Barrier::new(olds.len());
    let news: Vec<String> = std::thread::scope(|s| {
        let renewals: Vec<_> = olds
            .iter()
            .map(|old| {
                let barrier = &barrier;
                let app = &app;
                s.spawn(move || {
                    barrier.wait();
                    renewed(app, old)
                })
            })
            .collect();
        renewals.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<&String> = news.iter().collect();
    assert_eq!(distinct.len(), news.len(), "a new token each");
    let mut conn = app.conn();
    let entries = renewal_entries(&mut conn);
    assert_eq!(entries.len(), olds.len(), "one entry per renewal");
    for (old, new) in olds.iter().zip(&news) {
        let (old, new) = (jti_of(old), jti_of(new));
        assert_eq!(recorded_parent(&mut conn, &new), Some(Some(old.clone())));
        let recorded = entries_renewing_to(&entries, &new);
        assert_eq!(recorded.len(), 1, "{new}: {recorded:?}");
        assert_eq!(recorded[0]["from_jti"], old.as_str());
        assert_eq!(recorded[0]["token_kind"], "access_token");
    }
    for new in &news {
        assert_eq!(app.introspect(new)["active"], true);
    }
}

#[test]
fn revoking_a_token_while_its_family_is_renewed_concurrently_revokes_every_successor() {
    let app = spawn_app();
    let root = renewable(&app, "access_token");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let issued = std::sync::Mutex::new(Vec::new());
    // Chains renewed from the root, and the root itself renewed over and
    // over: on PostgreSQL one batch may lock a token and its successors,
    // which the revocation locks too.
    let renew_until_refused = |chain: bool| {
        let mut token = root.clone();
        for _ in 0..400 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let response = app.get("/api/v1/token/renew", Auth::Bearer(&token));
            match response.status {
                200 => {
                    let new = response.json()["access_token"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    issued.lock().unwrap().push(new.clone());
                    if chain {
                        token = new;
                    }
                }
                401 => {
                    response.assert_error(401, "invalid_token");
                    return;
                }
                other => panic!("renewal answered {other}: {}", response.body),
            }
        }
    };
    std::thread::scope(|s| {
        for chain in [true, true, true, true, true, true, false, false] {
            s.spawn(move || renew_until_refused(chain));
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
        revoke(&app, &root);
        // Every renewal from here on is refused; the loops end by themselves.
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let issued = issued.into_inner().unwrap();
    assert!(
        !issued.is_empty(),
        "no renewal got in before the revocation"
    );
    for token in &issued {
        assert_eq!(
            app.introspect(token)["active"],
            false,
            "a successor outlived the revocation of its family's root"
        );
    }
    assert_eq!(app.introspect(&root)["active"], false);
    eprintln!("{} successors revoked with their root", issued.len());
}

/// PostgreSQL: a transaction of the test's own that holds the row lock of
/// a token's family row, so that the renewal writer's batch waits on it.
struct RowLock {
    conn: keyward::store::AnyConnection,
    pid: i32,
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

impl RowLock {
    fn take(app: &crate::helpers::TestApp, jti: &str) -> RowLock {
        use diesel::connection::SimpleConnection;
        use diesel::prelude::*;
        let mut conn = app.conn();
        let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut conn)
            .unwrap()
            .pid;
        // jtis are base64url: nothing to quote.
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM token_families WHERE token_id = '{jti}' FOR UPDATE"
        ))
        .unwrap();
        RowLock { conn, pid }
    }

    /// The backend that waits on this lock, once one does (10 s at most).
    fn waiter(&self, app: &crate::helpers::TestApp) -> i32 {
        use diesel::prelude::*;
        let mut observer = app.conn();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting = diesel::sql_query(
                "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind::<diesel::sql_types::Integer, _>(self.pid)
            .load::<Pid>(&mut observer)
            .unwrap();
            if let Some(waiter) = waiting.first() {
                return waiter.pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no renewal came to wait on the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Takes another token's row lock in the same transaction, waiting
    /// for it as long as it is held (an error if PostgreSQL chose this
    /// transaction to break a deadlock).
    /// It looks for a deadlock only after a minute of waiting: an app of
    /// `spawn_app_finding_deadlocks_late` looks first, so when this closes
    /// a cycle the app's transaction is the one PostgreSQL aborts.
    fn take_also(&mut self, jti: &str) -> diesel::QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.conn.batch_execute(&format!(
            "SET LOCAL deadlock_timeout = '60s'; \
             SELECT 1 FROM token_families WHERE token_id = '{jti}' FOR UPDATE"
        ))
    }

    fn release(mut self) {
        use diesel::connection::SimpleConnection;
        self.conn.batch_execute("ROLLBACK").unwrap();
    }
}

/// PostgreSQL: an app whose transactions look for a deadlock after 3 s of
/// waiting rather than PostgreSQL's 1 s: a transaction looks once, when its
/// wait reaches the timeout, so the test has 3 s to close a cycle around a
/// transaction of the app for the app to find it, even on a busy machine.
fn spawn_app_finding_deadlocks_late() -> crate::helpers::TestApp {
    spawn_app_with(|s| {
        let url = s.database_url.take().unwrap();
        assert!(url.contains("options="), "{url}");
        // Inside the URL's `options`, after its search_path.
        s.database_url = Some(format!("{url}%20-c%20deadlock_timeout%3D3s"));
    })
}

/// PostgreSQL: the transactions that wrote the `token.renew` entries and
/// family rows of these new tokens' jtis.
fn writing_transactions(conn: &mut keyward::store::AnyConnection, jtis: &[String]) -> Vec<String> {
    use diesel::prelude::*;
    #[derive(diesel::QueryableByName)]
    struct Xid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        xid: String,
    }
    let query = diesel::sql_query(
        "SELECT DISTINCT xid FROM (
            SELECT xmin::text AS xid FROM token_families WHERE token_id = ANY($1)
            UNION ALL
            SELECT xmin::text FROM audit_events
            WHERE action = 'token.renew' AND details::json->>'jti' = ANY($1)
        ) written",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(jtis);
    let keyward::store::AnyConnection::Postgresql(pg) = conn else {
        panic!("transaction ids are PostgreSQL's");
    };
    query
        .load::<Xid>(pg)
        .unwrap()
        .into_iter()
        .map(|x| x.xid)
        .collect()
}

/// Sends a renewal of each token on a thread of its own; their answers.
fn renew_each<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    app: &'s crate::helpers::TestApp,
    tokens: &[&'s str],
) -> Vec<std::thread::ScopedJoinHandle<'s, crate::helpers::TestResponse>> {
    tokens
        .iter()
        .map(|&token| s.spawn(move || app.get("/api/v1/token/renew", Auth::Bearer(token))))
        .collect()
}

/// Long enough for renewals sent on their threads to be waiting in the
/// writer's queue (they do not touch the store before that).
const QUEUED: std::time::Duration = std::time::Duration::from_millis(1000);

#[test]
fn in_one_batch_a_renewal_of_a_token_revoked_meanwhile_is_refused_and_the_others_are_recorded_together(
) {
    let test = "in_one_batch_a_renewal_of_a_token_revoked_meanwhile_is_refused_and_the_others_are_recorded_together";
    if crate::helpers::postgres_or_skip(test).is_none() {
        return;
    }
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let token = || app.token_for(&client.client_id, &secret, &[]);
    let (blocker, doomed) = (token(), token());
    let others: Vec<String> = (0..3).map(|_| token()).collect();
    // The blocker's family row exists once it was renewed.
    renewed(&app, &blocker);
    let lock = RowLock::take(&app, &jti_of(&blocker));
    std::thread::scope(|s| {
        let first = renew_each(s, &app, &[&blocker]);
        lock.waiter(&app);
        // Queued behind the blocked batch, so they make the next one.
        let doomed_renewal = renew_each(s, &app, &[&doomed]);
        let other_renewals = renew_each(
            s,
            &app,
            &others.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        std::thread::sleep(QUEUED);
        // Revoked after its renewal was let in, before the batch runs.
        revoke(&app, &doomed);
        lock.release();
        assert_eq!(
            first.into_iter().next().unwrap().join().unwrap().status,
            200
        );
        doomed_renewal
            .into_iter()
            .next()
            .unwrap()
            .join()
            .unwrap()
            .assert_error(401, "invalid_token");
        let news: Vec<String> = other_renewals
            .into_iter()
            .map(|r| {
                let response = r.join().unwrap();
                assert_eq!(response.status, 200, "{}", response.body);
                jti_of(response.json()["access_token"].as_str().unwrap())
            })
            .collect();
        let mut conn = app.conn();
        let entries = renewal_entries(&mut conn);
        assert!(
            entries
                .iter()
                .all(|e| e["from_jti"] != jti_of(&doomed).as_str()),
            "the refused renewal was audited: {entries:?}"
        );
        for (old, new) in others.iter().zip(&news) {
            assert_eq!(recorded_parent(&mut conn, new), Some(Some(jti_of(old))));
            assert_eq!(entries_renewing_to(&entries, new).len(), 1);
        }
        // One transaction wrote the three successors and their entries.
        assert_eq!(writing_transactions(&mut conn, &news).len(), 1);
    });
    // Nothing of the refused renewal: no successor, and the token is revoked.
    use diesel::prelude::*;
    use keyward::store::schema::token_families;
    let children: i64 = token_families::table
        .filter(token_families::parent_id.eq(jti_of(&doomed)))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(children, 0);
    assert_eq!(app.introspect(&doomed)["active"], false);
}

#[test]
fn a_store_failure_in_the_middle_of_a_batch_answers_503_to_each_of_its_renewals_and_records_none() {
    let test = "a_store_failure_in_the_middle_of_a_batch_answers_503_to_each_of_its_renewals_and_records_none";
    if crate::helpers::postgres_or_skip(test).is_none() {
        return;
    }
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let token = || app.token_for(&client.client_id, &secret, &[]);
    let (blocker, held) = (token(), token());
    let others: Vec<String> = (0..3).map(|_| token()).collect();
    renewed(&app, &blocker);
    let held_child = jti_of(&renewed(&app, &held));
    let mut conn = app.conn();
    let entries_before = renewal_entries(&mut conn).len();
    let first_lock = RowLock::take(&app, &jti_of(&blocker));
    let second_lock = RowLock::take(&app, &jti_of(&held));
    std::thread::scope(|s| {
        let first = renew_each(s, &app, &[&blocker]);
        first_lock.waiter(&app);
        let mut batch: Vec<&str> = others.iter().map(String::as_str).collect();
        batch.push(&held);
        let batch = renew_each(s, &app, &batch);
        std::thread::sleep(QUEUED);
        first_lock.release();
        assert_eq!(
            first.into_iter().next().unwrap().join().unwrap().status,
            200
        );
        // The next batch, all four, waits on the second lock: its
        // connection is cut there, in the middle of its transaction.
        let writer = second_lock.waiter(&app);
        diesel::sql_query("SELECT pg_terminate_backend($1)")
            .bind::<diesel::sql_types::Integer, _>(writer)
            .execute(&mut conn)
            .unwrap();
        for renewal in batch {
            renewal
                .join()
                .unwrap()
                .assert_error(503, "temporarily_unavailable");
        }
    });
    second_lock.release();
    // Nothing of the failed batch: no successor, no entry.
    use diesel::prelude::*;
    use keyward::store::schema::token_families;
    let mut parents: Vec<String> = others.iter().map(|t| jti_of(t)).collect();
    parents.push(jti_of(&held));
    let children: Vec<String> = token_families::table
        .filter(token_families::parent_id.eq_any(&parents))
        .select(token_families::token_id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        children,
        vec![held_child],
        "only the renewal before the failure"
    );
    // The blocker's renewal, and nothing else, since.
    assert_eq!(renewal_entries(&mut conn).len(), entries_before + 1);
    // The store is back: the same renewals go through.
    for token in others.iter().chain([&held]) {
        renewed(&app, token);
    }
}

#[test]
fn a_batch_aborted_by_a_deadlock_is_run_again_and_records_each_renewal_once() {
    let test = "a_batch_aborted_by_a_deadlock_is_run_again_and_records_each_renewal_once";
    if crate::helpers::postgres_or_skip(test).is_none() {
        return;
    }
    let app = spawn_app_finding_deadlocks_late();
    let (client, secret) = app.new_client("reader", |c| c.can_renew = Some(true));
    let token = || app.token_for(&client.client_id, &secret, &[]);
    let blocker = token();
    let mut pair = [token(), token()];
    for t in [&blocker, &pair[0], &pair[1]] {
        renewed(&app, t);
    }
    // The batch locks its parents by issue time, then jti: `first`, then
    // `second`.
    pair.sort_by_key(|t| {
        let claims = jwt_parts(t).1;
        (claims["iat"].as_i64().unwrap(), jti_of(t))
    });
    let [first, second] = pair;
    let lock = RowLock::take(&app, &jti_of(&blocker));
    let mut other = RowLock::take(&app, &jti_of(&second));
    std::thread::scope(|s| {
        let blocked = renew_each(s, &app, &[&blocker]);
        lock.waiter(&app);
        let pair_renewals = renew_each(s, &app, &[&first, &second]);
        std::thread::sleep(QUEUED);
        lock.release();
        assert_eq!(
            blocked.into_iter().next().unwrap().join().unwrap().status,
            200
        );
        // The batch holds `first` and waits for `second`; this transaction
        // holds `second` and now waits for `first`. PostgreSQL aborts the
        // one that looks first, the batch, so this one gets `first`.
        other.waiter(&app);
        other
            .take_also(&jti_of(&first))
            .expect("the batch, looking first, is the one PostgreSQL aborts");
        other.release();
        let news: Vec<String> = pair_renewals
            .into_iter()
            .map(|r| {
                let response = r.join().unwrap();
                assert_eq!(response.status, 200, "{}", response.body);
                jti_of(response.json()["access_token"].as_str().unwrap())
            })
            .collect();
        let mut conn = app.conn();
        let entries = renewal_entries(&mut conn);
        for (old, new) in [&first, &second].into_iter().zip(&news) {
            assert_eq!(recorded_parent(&mut conn, new), Some(Some(jti_of(old))));
            assert_eq!(entries_renewing_to(&entries, new).len(), 1);
        }
        assert_eq!(writing_transactions(&mut conn, &news).len(), 1);
    });
}

#[test]
fn a_revocation_aborted_by_a_deadlock_is_run_again_and_revokes_the_family() {
    let test = "a_revocation_aborted_by_a_deadlock_is_run_again_and_revokes_the_family";
    if crate::helpers::postgres_or_skip(test).is_none() {
        return;
    }
    let app = spawn_app_finding_deadlocks_late();
    let root = renewable(&app, "access_token");
    let child = renewed(&app, &root);
    // Held as a renewal batch holding the child would hold it.
    let mut lock = RowLock::take(&app, &jti_of(&child));
    std::thread::scope(|s| {
        let revocation = s.spawn(|| revoke(&app, &root));
        // The revocation holds the root and waits for the child; this
        // transaction now waits for the root: PostgreSQL aborts the
        // revocation, which looks first, and it runs again.
        lock.waiter(&app);
        lock.take_also(&jti_of(&root))
            .expect("the revocation, looking first, is the one PostgreSQL aborts");
        lock.release();
        revocation.join().unwrap();
    });
    assert_eq!(app.introspect(&root)["active"], false);
    assert_eq!(app.introspect(&child)["active"], false);
}

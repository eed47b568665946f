//! Several `keyward serve` processes on one PostgreSQL: a change made on one
//! node is seen by the others (through LISTEN/NOTIFY), and a node that loses
//! its channel reads from the database instead of serving stale answers.
//! These need PostgreSQL: they run in the PostgreSQL pass only. (How fast is measured by the load benchmark's
//! `propagation` scenario, not here.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{postgres_or_skip, start, test_settings, Auth, CliRunner, PgSchema, TestApp};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

struct Cluster {
    nodes: Vec<TestApp>,
    admin_id: String,
    admin_secret: String,
    _keys: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
    _schema: PgSchema,
}

/// Three nodes on one new schema, or None (said on stderr) without PostgreSQL.
fn cluster(test: &str) -> Option<Cluster> {
    let schema = postgres_or_skip(test)?.schema();
    let keys = tempfile::tempdir().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<TestApp> = dirs
        .iter()
        .map(|dir| {
            let mut settings = test_settings(dir.path(), schema.url());
            settings.keys_dir = keys.path().to_path_buf();
            // One issuer for the whole cluster, as behind a load balancer.
            settings.issuer = Some("https://auth.cluster.test".into());
            // The nodes' own purges keep everything; the tests purge by hand.
            settings.retention_days = 36_500;
            start(settings, tempfile::tempdir().unwrap(), None)
        })
        .collect();
    let first = &nodes[0];
    let (admin_id, admin_secret) = (first.admin_id.clone(), first.admin_secret.clone());
    assert!(!admin_id.is_empty());
    // Wait for every node's channel to be up (it starts on its own thread).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listeners_up(&nodes) {
        assert!(Instant::now() < deadline, "listeners did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Cluster {
        nodes,
        admin_id,
        admin_secret,
        _keys: keys,
        _dirs: dirs,
        _schema: schema,
    })
}

fn listeners_up(nodes: &[TestApp]) -> bool {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = nodes[0].conn();
    let keyward::store::AnyConnection::Postgresql(pg) = &mut conn else {
        panic!("postgres")
    };
    let names: Vec<String> = nodes.iter().map(|n| n.listener_name.clone()).collect();
    let found: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&names)
    .get_result(pg)
    .unwrap();
    found.n >= names.len() as i64
}

/// Polls `check` on every node but the first until it holds on all.
fn seen_everywhere(cluster: &Cluster, what: &str, check: impl Fn(&TestApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    for node in &cluster.nodes[1..] {
        while !check(node) {
            assert!(
                Instant::now() < deadline,
                "{what} was not seen by another node"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Cluster {
    fn admin_token(&self) -> String {
        self.nodes[0].token_for(&self.admin_id, &self.admin_secret, &[])
    }

    fn introspect_on(&self, node: &TestApp, token: &str) -> bool {
        let response = node.post_form(
            "/oauth/introspect",
            &[("token", token)],
            Auth::Basic(&self.admin_id, &self.admin_secret),
        );
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()["active"] == true
    }

    /// A new client (by node 0's admin API) and a token of it, with both
    /// cached on every node.
    fn warm_client(&self, kind: &str) -> (String, String, String) {
        let admin = self.admin_token();
        let created = self.nodes[0]
            .admin(
                "POST",
                "/admin/v1/clients",
                &admin,
                Some(json!({"name": "c", "role": "reader", "kind": kind, "can_renew": true})),
            )
            .json();
        let id = created["client_id"].as_str().unwrap().to_string();
        let (credential, token) = if kind == "api_token" {
            let t = created["token"].as_str().unwrap().to_string();
            (t.clone(), t)
        } else {
            let secret = created["client_secret"].as_str().unwrap().to_string();
            let token = self.nodes[0].token_for(&id, &secret, &[]);
            (secret, token)
        };
        for node in &self.nodes {
            assert!(self.introspect_on(node, &token));
            if kind != "api_token" {
                assert_eq!(
                    node.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &credential))
                        .status,
                    200
                );
            }
        }
        (id, credential, token)
    }
}

#[test]
fn every_kind_of_change_on_one_node_reaches_the_others() {
    let Some(cluster) = cluster("every_kind_of_change_on_one_node_reaches_the_others") else {
        return;
    };
    let admin = cluster.admin_token();
    let node0 = &cluster.nodes[0];

    for action in ["revoke", "disable"] {
        let (id, secret, token) = cluster.warm_client("client_credentials");
        node0.admin(
            "POST",
            &format!("/admin/v1/clients/{id}/{action}"),
            &admin,
            None,
        );
        seen_everywhere(&cluster, action, |n| {
            !cluster.introspect_on(n, &token)
                && n.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
                    .status
                    == 401
        });
        if action == "disable" {
            node0.admin(
                "POST",
                &format!("/admin/v1/clients/{id}/enable"),
                &admin,
                None,
            );
            seen_everywhere(&cluster, "enable", |n| cluster.introspect_on(n, &token));
            // Delete: disable again, then delete.
            node0.admin(
                "POST",
                &format!("/admin/v1/clients/{id}/disable"),
                &admin,
                None,
            );
            seen_everywhere(&cluster, "disable", |n| !cluster.introspect_on(n, &token));
            node0.admin(
                "POST",
                &format!("/admin/v1/clients/{id}/enable"),
                &admin,
                None,
            );
            seen_everywhere(&cluster, "enable", |n| cluster.introspect_on(n, &token));
        }
    }

    // Delete (after a disable on node 1 this time).
    let (id, secret, token) = cluster.warm_client("client_credentials");
    cluster.nodes[1].admin(
        "POST",
        &format!("/admin/v1/clients/{id}/disable"),
        &admin,
        None,
    );
    node0.admin("DELETE", &format!("/admin/v1/clients/{id}"), &admin, None);
    seen_everywhere(&cluster, "delete", |n| {
        !cluster.introspect_on(n, &token)
            && n.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
                .status
                == 401
    });

    // A new secret: the old one stops everywhere.
    let (id, old_secret, _) = cluster.warm_client("client_credentials");
    let rotated = node0
        .admin(
            "POST",
            &format!("/admin/v1/clients/{id}/secret"),
            &admin,
            None,
        )
        .json();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    seen_everywhere(&cluster, "new secret", |n| {
        n.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &old_secret))
            .status
            == 401
            && n.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &new_secret))
                .status
                == 200
    });

    // One access token revoked by jti.
    let (id, secret, token) = cluster.warm_client("client_credentials");
    node0.post_form(
        "/oauth/revoke",
        &[("token", &token)],
        Auth::Basic(&id, &secret),
    );
    seen_everywhere(&cluster, "token revocation", |n| {
        !cluster.introspect_on(n, &token)
    });

    // One API token revoked; and renewal refuses it everywhere.
    let (_, _, api_token) = cluster.warm_client("api_token");
    node0.post_form(
        "/oauth/revoke",
        &[("token", &api_token)],
        Auth::Bearer(&api_token),
    );
    seen_everywhere(&cluster, "API token revocation", |n| {
        !cluster.introspect_on(n, &api_token)
            && n.get("/api/v1/token/renew", Auth::Bearer(&api_token))
                .status
                == 401
    });

    // A key rotation: every node signs with the new key.
    let old_kid = crate::helpers::jwt_parts(&admin).0["kid"].clone();
    let output = CliRunner::for_app(node0).run(&["keys", "rotate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    seen_everywhere(&cluster, "key rotation", |n| {
        let token = n.token_for(&cluster.admin_id, &cluster.admin_secret, &[]);
        crate::helpers::jwt_parts(&token).0["kid"] != old_kid
    });
    assert!(
        cluster.introspect_on(&cluster.nodes[2], &admin),
        "old tokens still verify"
    );
}

#[test]
fn a_node_that_loses_its_channel_reads_the_database_instead_of_its_cache() {
    let Some(cluster) =
        cluster("a_node_that_loses_its_channel_reads_the_database_instead_of_its_cache")
    else {
        return;
    };
    let admin = cluster.admin_token();
    let (id, secret, token) = cluster.warm_client("client_credentials");
    // Cut every node's channel (this cluster's only: other tests share the database).
    {
        use diesel::prelude::*;
        let mut conn = cluster.nodes[0].conn();
        let keyward::store::AnyConnection::Postgresql(pg) = &mut conn else {
            panic!("postgres")
        };
        let names: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| n.listener_name.clone())
            .collect();
        diesel::sql_query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1)")
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&names)
            .execute(pg)
            .unwrap();
    }
    // Revoke while the channels are down (or still reconnecting): the
    // NOTIFY may reach nobody, yet no node may keep serving the client.
    cluster.nodes[0].admin(
        "POST",
        &format!("/admin/v1/clients/{id}/revoke"),
        &admin,
        None,
    );
    seen_everywhere(&cluster, "revocation without a channel", |n| {
        !cluster.introspect_on(n, &token)
            && n.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
                .status
                == 401
    });
    // And the channel comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listeners_up(&cluster.nodes) {
        assert!(Instant::now() < deadline, "listeners did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn db_operations(node: &TestApp) -> u64 {
    node.db_operations
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn in_steady_state_token_and_introspection_requests_make_no_database_round_trip() {
    let Some(cluster) =
        cluster("in_steady_state_token_and_introspection_requests_make_no_database_round_trip")
    else {
        return;
    };
    let (id, secret, token) = cluster.warm_client("client_credentials");
    let (_, _, api_token) = cluster.warm_client("api_token");
    let pass = |node: &TestApp, rounds: usize| {
        for _ in 0..rounds {
            assert_eq!(
                node.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
                    .status,
                200
            );
            assert!(cluster.introspect_on(node, &token));
            assert!(cluster.introspect_on(node, &api_token));
        }
    };
    for node in &cluster.nodes {
        // Steady state: a notification of the second client's creation may
        // still be in flight and discard a fill made before it arrived, so
        // passes repeat until one is free; a cache that does not work never
        // gets there.
        let settled = (0..5).any(|_| {
            let before = db_operations(node);
            pass(node, 1);
            db_operations(node) == before
        });
        assert!(settled, "a warm node still reads the database");
        let before = db_operations(node);
        pass(node, 20);
        assert_eq!(db_operations(node), before, "served from the directory");
    }
}

#[test]
fn revoking_a_token_on_one_node_revokes_its_renewed_successors_on_every_node_within_a_second() {
    let Some(cluster) = cluster(
        "revoking_a_token_on_one_node_revokes_its_renewed_successors_on_every_node_within_a_second",
    ) else {
        return;
    };
    for kind in ["client_credentials", "api_token"] {
        let (_, _, a) = cluster.warm_client(kind);
        // A chain renewed on different nodes, each link cached everywhere.
        let renew_on = |node: &TestApp, token: &str| -> String {
            let response = node.get("/api/v1/token/renew", Auth::Bearer(token));
            assert_eq!(response.status, 200, "{}", response.body);
            response.json()["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let b = renew_on(&cluster.nodes[0], &a);
        let c = renew_on(&cluster.nodes[1], &b);
        for node in &cluster.nodes {
            assert!(cluster.introspect_on(node, &b) && cluster.introspect_on(node, &c));
        }
        let response = cluster.nodes[0].post_form(
            "/oauth/revoke",
            &[("token", &a)],
            Auth::Basic(&cluster.admin_id, &cluster.admin_secret),
        );
        assert_eq!(response.status, 200, "{}", response.body);
        let deadline = Instant::now() + Duration::from_secs(1);
        for node in &cluster.nodes[1..] {
            while cluster.introspect_on(node, &b) || cluster.introspect_on(node, &c) {
                assert!(
                    Instant::now() < deadline,
                    "{kind}: a renewed successor was still active on another node after 1 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                node.get("/api/v1/token/renew", Auth::Bearer(&c)).status,
                401,
                "{kind}"
            );
        }
    }
}

#[test]
fn a_key_removed_with_the_cli_is_dropped_by_every_node_within_a_second() {
    let Some(cluster) =
        cluster("a_key_removed_with_the_cli_is_dropped_by_every_node_within_a_second")
    else {
        return;
    };
    let token = cluster.admin_token();
    let (header, _) = crate::helpers::jwt_parts(&token);
    let old_kid = header["kid"].as_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let cli = CliRunner::new(
        Some(cluster._schema.url()),
        data.path(),
        cluster._keys.path(),
    );
    let run = |args: &[&str]| {
        cli.run_ok(args);
    };
    run(&["keys", "rotate"]);
    for node in &cluster.nodes {
        assert!(cluster.introspect_on(node, &token));
    }
    run(&["keys", "remove", &old_kid]);
    let removed_at = Instant::now();
    for node in &cluster.nodes {
        while cluster.introspect_on(node, &token) {
            assert!(
                removed_at.elapsed() < Duration::from_secs(1),
                "a node still accepts a token of the removed key"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let admin = node.admin("GET", "/admin/v1/clients", &token, None);
        admin.assert_error(401, "invalid_token");
    }
}

#[test]
fn a_credential_purged_with_the_cli_is_dropped_by_every_node() {
    let Some(cluster) = cluster("a_credential_purged_with_the_cli_is_dropped_by_every_node") else {
        return;
    };
    // Cached as valid on every node; then, straight in the store (no node
    // told), revoked 60 days ago.
    let (id, secret, _) = cluster.warm_client("client_credentials");
    {
        use diesel::prelude::*;
        use keyward::store::schema::clients;
        let mut conn = cluster.nodes[0].conn();
        diesel::update(clients::table.find(&id))
            .set((
                clients::status.eq("revoked"),
                clients::revoked_at.eq(Some(keyward::service::now() - 60 * 86_400)),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    for node in &cluster.nodes {
        assert_eq!(
            node.post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
                .status,
            200,
            "the stale cache still has it"
        );
    }
    let data = tempfile::tempdir().unwrap();
    let cli = CliRunner::new(
        Some(cluster._schema.url()),
        data.path(),
        cluster._keys.path(),
    );
    let output = cli.run(&["purge"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), id);
    let purged_at = Instant::now();
    for node in &cluster.nodes {
        while node
            .post_form("/oauth/token", &[GRANT], Auth::Basic(&id, &secret))
            .status
            == 200
        {
            assert!(
                purged_at.elapsed() < Duration::from_secs(1),
                "a node still knows a purged client"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn a_client_assertion_is_accepted_once_across_nodes() {
    use crate::helpers::Signer;
    let Some(cluster) = cluster("a_client_assertion_is_accepted_once_across_nodes") else {
        return;
    };
    let first = &cluster.nodes[0];
    let admin = first.token_for(&cluster.admin_id, &cluster.admin_secret, &[]);
    let signer = Signer::new(jsonwebtoken::Algorithm::EdDSA, "k1");
    let response = first.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(json!({"name": "signer", "role": "reader",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": Signer::jwks(&[&signer])})),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.json()["client_id"].as_str().unwrap().to_string();
    let assertion = |jti: &str| {
        let now = chrono::Utc::now().timestamp();
        signer.sign(
            &json!({"iss": id, "sub": id, "aud": "https://auth.cluster.test",
                            "iat": now, "exp": now + 300, "jti": jti}),
        )
    };
    let present = |node: &TestApp, assertion: &str| {
        node.post_form(
            "/oauth/token",
            &[
                GRANT,
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ],
            Auth::None,
        )
        .status
    };
    // One after another: the first node takes it, the others refuse it.
    let once = assertion("sequential");
    assert_eq!(present(&cluster.nodes[1], &once), 200);
    assert_eq!(present(&cluster.nodes[2], &once), 401);
    assert_eq!(present(&cluster.nodes[0], &once), 401);
    // All at once: exactly one node takes it.
    for round in 0..5 {
        let raced = assertion(&format!("raced-{round}"));
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = cluster
                .nodes
                .iter()
                .map(|node| scope.spawn(|| present(node, &raced)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "{statuses:?}"
        );
    }
}

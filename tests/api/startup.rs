use std::time::{Duration, Instant};

use diesel::prelude::*;
use keyward::store::schema::{clients, tenants};
use keyward::tokens::keys::{generate_key_file, SigningAlg};

use crate::helpers::{
    jwt_parts, new_store, postgres_or_skip, spawn_app, start, test_settings, with_search_path, Auth,
};

#[test]
fn first_start_writes_the_bootstrap_admin_once_with_mode_0600() {
    let app = spawn_app();
    let path = app.settings.data_dir.join("bootstrap-admin.json");
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(file["client_id"].as_str().unwrap().starts_with("kwc_"));
    assert!(file["client_secret"].as_str().unwrap().starts_with("kws_"));
    assert_eq!(file["tenant_id"], app.root_tenant);
    // The bootstrap admin can do everything, introspection included.
    let token = app.admin_token();
    let introspected = app.introspect(&token);
    assert_eq!(introspected["role"], "admin");
    for scope in [
        "clients:read",
        "clients:write",
        "clients:delete",
        "tenants:read",
        "tenants:write",
        "audit:read",
        "introspect",
    ] {
        assert!(
            introspected["scope"]
                .as_str()
                .unwrap()
                .split(' ')
                .any(|s| s == scope),
            "{scope}"
        );
    }
}

#[test]
fn a_second_start_creates_nothing_new_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = new_store(dir.path());
    let settings = test_settings(dir.path(), url);
    let first = start(settings.clone(), tempfile::tempdir().unwrap(), None);
    let file = std::fs::read_to_string(settings.data_dir.join("bootstrap-admin.json")).unwrap();
    drop(first);
    let second = start(settings.clone(), tempfile::tempdir().unwrap(), None);
    assert_eq!(
        std::fs::read_to_string(settings.data_dir.join("bootstrap-admin.json")).unwrap(),
        file
    );
    let mut conn = second.conn();
    assert_eq!(
        tenants::table.count().get_result::<i64>(&mut conn).unwrap(),
        1
    );
    assert_eq!(
        clients::table.count().get_result::<i64>(&mut conn).unwrap(),
        1
    );
    // The first admin's credentials still work.
    assert!(!second.admin_token().is_empty());
    drop(second);
    drop(schema);
}

#[test]
fn a_rotated_key_is_picked_up_without_a_restart_and_old_tokens_keep_verifying() {
    let app = spawn_app();
    let old_token = app.admin_token();
    let old_kid = jwt_parts(&old_token).0["kid"].as_str().unwrap().to_string();
    generate_key_file(&app.keys_dir(), SigningAlg::EdDSA).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_token = loop {
        let token = app.admin_token();
        if jwt_parts(&token).0["kid"] != old_kid.as_str() {
            break token;
        }
        assert!(Instant::now() < deadline, "rotation not picked up");
        std::thread::sleep(Duration::from_millis(200));
    };
    let jwks = app.get("/.well-known/jwks.json", Auth::None).json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        kids[0],
        jwt_parts(&new_token).0["kid"].as_str().unwrap(),
        "signing key first"
    );
    assert!(kids.contains(&old_kid.as_str()));
    assert_eq!(app.introspect(&old_token)["active"], true);
    crate::helpers::verify_with_jwks(&app, &old_token);
    crate::helpers::verify_with_jwks(&app, &new_token);
}

#[test]
fn several_servers_starting_at_once_on_one_postgres_create_one_admin() {
    let Some(postgres) =
        postgres_or_skip("several_servers_starting_at_once_on_one_postgres_create_one_admin")
    else {
        return;
    };
    let schema = postgres.schema();
    let url = schema.url();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let keys = tempfile::tempdir().unwrap();
    let handles: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let mut settings = test_settings(dir.path(), url.clone());
            settings.keys_dir = keys.path().to_path_buf();
            std::thread::spawn(move || start(settings, tempfile::tempdir().unwrap(), None))
        })
        .collect();
    let apps: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let written = dirs
        .iter()
        .filter(|d| d.path().join("data/bootstrap-admin.json").exists())
        .count();
    assert_eq!(written, 1, "exactly one server wrote the bootstrap file");
    let mut conn = apps[0].conn();
    assert_eq!(
        tenants::table.count().get_result::<i64>(&mut conn).unwrap(),
        1
    );
    assert_eq!(
        clients::table.count().get_result::<i64>(&mut conn).unwrap(),
        1
    );
    drop(apps);
    drop(schema);
}

/// A TCP relay in front of PostgreSQL that a test can cut and restore.
struct Relay {
    port: u16,
    target: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(port: u16, target: &str) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, streams2, target2) = (stop.clone(), streams.clone(), target.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = std::net::TcpStream::connect(&target2) else {
                            continue;
                        };
                        let mut list = streams2.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(server.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay {
            port,
            target: target.to_string(),
            stop,
            streams,
            thread: Some(thread),
        }
    }

    fn cut(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn when_the_database_goes_away_hot_paths_answer_503_quickly_and_recover() {
    let Some(postgres) =
        postgres_or_skip("when_the_database_goes_away_hot_paths_answer_503_quickly_and_recover")
    else {
        return;
    };
    let schema = postgres.schema();
    let base = postgres.base_url().to_string();
    // Route the app's connections through the relay.
    let after_at = base.rsplit_once('@').map(|(_, rest)| rest).unwrap_or(&base);
    let host_port = after_at.split('/').next().unwrap().to_string();
    let mut relay = Relay::start(0, &host_port);
    let relayed = base.replacen(&host_port, &format!("127.0.0.1:{}", relay.port), 1);
    let url = with_search_path(&relayed, &schema.name);
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path(), url);
    let app = start(settings, tempfile::tempdir().unwrap(), None);
    let token = app.admin_token();

    relay.cut();
    let started = Instant::now();
    app.post_form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        Auth::Basic(&app.admin_id, &app.admin_secret),
    )
    .assert_error(503, "temporarily_unavailable");
    app.post_form(
        "/oauth/introspect",
        &[("token", &token)],
        Auth::Bearer(&token),
    )
    .assert_error(503, "temporarily_unavailable");
    assert_eq!(app.get("/readyz", Auth::None).status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers came quickly: {:?}",
        started.elapsed()
    );

    let relay_back = Relay::start(relay.port, &relay.target);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Auth::Basic(&app.admin_id, &app.admin_secret),
        );
        if response.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {}",
            response.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(app.get("/readyz", Auth::None).status, 200);
    assert_eq!(app.introspect(&token)["active"], true);
    drop(app);
    let mut relay_back = relay_back;
    relay_back.cut();
    drop(schema);
}

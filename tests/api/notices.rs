//! Expiry notices (API.md section 4) against a real SMTP server on loopback
//! (mailin-embedded: the protocol, STARTTLS through rustls, AUTH PLAIN), with
//! the server's clock moved by hand and KEYWARD_NOTICE_INTERVAL at 1 s.

use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward::clock::ManualClock;
use mailin_embedded::response::{self, Response};
use mailin_embedded::{AuthMechanism, Handler, Server, SslConfig};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, start, test_settings, TestApp};

const DAY: u64 = 86_400;

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct Seen {
    mails: Vec<Mail>,
    /// AUTH attempts: (user, password).
    logins: Vec<(String, String)>,
}

#[derive(Clone)]
struct Sink {
    seen: Arc<Mutex<Seen>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Sink {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = Mail {
            to: std::mem::take(&mut self.to),
            data: String::from_utf8_lossy(&self.data).into_owned(),
        };
        self.seen.lock().unwrap().mails.push(mail);
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.seen
            .lock()
            .unwrap()
            .logins
            .push((user.to_string(), password.to_string()));
        if password == "mail-password" {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

/// A real SMTP server on loopback: its port, what it received, and (with
/// TLS) the PEM of its self-signed certificate.
pub struct SmtpSink {
    pub port: u16,
    seen: Arc<Mutex<Seen>>,
    pub cert: Option<tempfile::NamedTempFile>,
    _dir: Option<tempfile::TempDir>,
}

impl SmtpSink {
    /// `tls`: offers STARTTLS; `auth`: offers AUTH PLAIN, and then wants it
    /// before MAIL.
    fn start_on(listener: TcpListener, tls: bool, auth: bool) -> SmtpSink {
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handler = Sink {
            seen: seen.clone(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("localhost")
            .with_num_threads(4)
            .with_tcp_listener(listener);
        if auth {
            server.with_auth(AuthMechanism::Plain);
        }
        let (mut cert_file, mut dir) = (None, None);
        if tls {
            // The SMTP sink asks rustls for the process's provider.
            keyward::install_crypto_provider();
            let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            let d = tempfile::tempdir().unwrap();
            let cert_path = d.path().join("cert.pem");
            let key_path = d.path().join("key.pem");
            std::fs::write(&cert_path, made.cert.pem()).unwrap();
            std::fs::write(&key_path, made.key_pair.serialize_pem()).unwrap();
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path: cert_path.display().to_string(),
                    key_path: key_path.display().to_string(),
                })
                .unwrap();
            let ca = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(ca.path(), made.cert.pem()).unwrap();
            cert_file = Some(ca);
            dir = Some(d);
        } else {
            server.with_ssl(SslConfig::None).unwrap();
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpSink {
            port,
            seen,
            cert: cert_file,
            _dir: dir,
        }
    }

    pub fn start(tls: bool, auth: bool) -> SmtpSink {
        SmtpSink::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), tls, auth)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.seen.lock().unwrap().mails.clone()
    }

    fn logins(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().logins.clone()
    }

    /// Waits until `n` mails are in, then a little longer to see that no
    /// more come; returns them.
    pub fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.mails().len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} mails expected, {} came: {:#?}",
                self.mails().len(),
                self.mails()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Two more looks of the server (1 s each) bring nothing more.
        std::thread::sleep(Duration::from_millis(2500));
        let mails = self.mails();
        assert_eq!(mails.len(), n, "{mails:#?}");
        mails
    }
}

/// An app that sends through `smtp_url`, looks every second, on `clock`.
fn app_mailing(smtp_url: &str, clock: &Arc<ManualClock>, ca: Option<&std::path::Path>) -> TestApp {
    let url = smtp_url.to_string();
    let clock = clock.clone();
    let ca = ca.map(|p| p.to_path_buf());
    spawn_app_with(move |s| {
        s.smtp_url = Some(url);
        s.smtp_from = Some("keyward <keyward@example.com>".into());
        s.smtp_ca_file = ca;
        s.notice_interval = 1;
        s.clock = Some(clock);
        s.issuer = Some("https://auth.example.com".into());
    })
}

fn owned_client(
    app: &TestApp,
    admin: &str,
    name: &str,
    expires_in_days: u64,
    owner: Option<&str>,
) -> Value {
    let mut body = json!({"name": name, "role": "reader", "expires_in": expires_in_days * DAY});
    if let Some(owner) = owner {
        body["owner_email"] = json!(owner);
    }
    let made = app.admin("POST", "/admin/v1/clients", admin, Some(body));
    assert_eq!(made.status, 201, "{}", made.body);
    made.json()
}

/// The notices as `GET /admin/v1/notices` lists them. Once the test has
/// moved the clock days ahead every access token has expired, so after the
/// first look through the API they are read through the same service call.
fn notices(app: &TestApp, admin: &str) -> Vec<Value> {
    let listed = app
        .request("GET", "/admin/v1/notices?limit=100")
        .bearer(admin)
        .send();
    if listed.status == 200 {
        return listed.json()["items"].as_array().unwrap().clone();
    }
    let mut conn = app.conn();
    keyward::service::notices::list(&mut conn, &app.root_actor(), 100, None)
        .unwrap()
        .into_iter()
        .map(|n| serde_json::to_value(n).unwrap())
        .collect()
}

fn subject(mail: &Mail) -> String {
    mail.data
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_owner_hears_once_per_threshold_and_once_expired_and_far_expiries_are_quiet() {
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let app = app_mailing(&format!("smtp://127.0.0.1:{}", sink.port), &clock, None);
    let admin = app.admin_token();
    let soon = owned_client(
        &app,
        &admin,
        "billing-export",
        20,
        Some("owner@example.com"),
    );
    owned_client(&app, &admin, "far-away", 100, Some("far@example.com"));
    owned_client(&app, &admin, "nobody-owns-it", 20, None);
    let secret = soon["client_secret"].as_str().unwrap().to_string();
    let id = soon["client_id"].as_str().unwrap().to_string();
    // Nothing is due yet.
    std::thread::sleep(Duration::from_millis(2200));
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());

    let steps = [
        (6, 1, "in 14 days"),
        (7, 2, "in 7 days"),
        (6, 3, "in 1 day"),
        (2, 4, "has expired"),
    ];
    for (days, count, words) in steps {
        // A minute past each mark: the client was made a moment after the
        // clock was set.
        clock.advance(Duration::from_secs(days * DAY + 60));
        let mails = sink.wait_for(count);
        let mail = mails.last().unwrap();
        assert_eq!(mail.to, vec!["owner@example.com".to_string()]);
        let text = mail.data.replace("=\r\n", "");
        assert!(subject(mail).contains("billing-export"), "{}", mail.data);
        assert!(
            text.contains(words) || subject(mail).contains(words),
            "{words}: {}",
            mail.data
        );
        assert!(text.contains(&id), "{}", mail.data);
        assert!(text.contains("UTC"), "{}", mail.data);
        assert!(text.contains("Content-Type: text/plain"), "{}", mail.data);
        assert!(text.contains("Content-Type: text/html"), "{}", mail.data);
        assert!(!text.contains(&secret), "never a secret");
        if words == "in 7 days" {
            // The README shows this mail as received (`--nocapture`).
            eprintln!("---- received ----\n{}\n---- end ----", mail.data);
        }
    }
    let recorded = notices(&app, &admin);
    assert_eq!(recorded.len(), 4, "{recorded:#?}");
    assert!(recorded
        .iter()
        .all(|n| n["status"] == "sent" && n["to"] == "owner@example.com"));
    let thresholds: Vec<i64> = recorded
        .iter()
        .map(|n| n["threshold"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, vec![0, 1, 7, 14], "newest first");
    // Metrics count what this node sent.
    let metrics = app.get("/metrics", crate::helpers::Auth::None).body;
    assert!(
        metrics.contains("keyward_notices_total{outcome=\"sent\"}"),
        "{metrics}"
    );
}

#[test]
fn a_credential_first_seen_inside_several_thresholds_gets_one_notice_for_the_nearest() {
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let app = app_mailing(&format!("smtp://127.0.0.1:{}", sink.port), &clock, None);
    let admin = app.admin_token();
    owned_client(&app, &admin, "late-bloomer", 3, Some("owner@example.com"));
    clock.advance(Duration::from_secs(60));
    let mails = sink.wait_for(1);
    assert!(
        subject(&mails[0]).contains("in 3 days"),
        "{}",
        mails[0].data
    );
    let recorded = notices(&app, &admin);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["threshold"], 7);
}

#[test]
fn a_restarted_server_does_not_send_a_notice_again() {
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    // One store (and keys) that outlives the first server.
    let home = tempfile::tempdir().unwrap();
    let (database_url, _schema) = crate::helpers::new_store(home.path());
    let server = || {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path(), database_url.clone());
        settings.keys_dir = home.path().join("keys");
        settings.smtp_url = Some(url.clone());
        settings.smtp_from = Some("keyward@example.com".into());
        settings.notice_interval = 1;
        settings.clock = Some(clock.clone());
        start(settings, dir, None)
    };
    let first = server();
    let admin = first.admin_token();
    owned_client(&first, &admin, "restart-me", 5, Some("owner@example.com"));
    sink.wait_for(1);
    drop(first);
    let _second = server();
    // Its first look at start, and two more: still the one mail.
    sink.wait_for(1);
}

#[test]
fn a_failed_send_is_retried_with_backoff_until_the_smtp_server_is_back() {
    // A port with nothing listening: the SMTP server is down.
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let clock = ManualClock::starting_now();
    let app = app_mailing(&format!("smtp://127.0.0.1:{port}"), &clock, None);
    let admin = app.admin_token();
    owned_client(&app, &admin, "patient", 5, Some("owner@example.com"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let recorded = notices(&app, &admin);
        if let Some(n) = recorded
            .first()
            .filter(|n| n["attempts"].as_i64() >= Some(1))
        {
            break n.clone();
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(failed["status"], "pending");
    assert!(
        failed["last_error"].as_str().unwrap().contains("SMTP"),
        "{failed}"
    );
    // Back on the same port; after the backoff (the clock moved past it)
    // the notice goes, once.
    let sink = SmtpSink::start_on(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        false,
        false,
    );
    clock.advance(Duration::from_secs(120));
    sink.wait_for(1);
    let recorded = notices(&app, &admin);
    assert_eq!(recorded[0]["status"], "sent", "{recorded:#?}");
    assert!(recorded[0]["attempts"].as_i64() >= Some(2));
}

#[test]
fn starttls_with_a_self_signed_certificate_trusted_through_the_ca_file_carries_the_login() {
    let sink = SmtpSink::start(true, true);
    let clock = ManualClock::starting_now();
    let ca = sink.cert.as_ref().unwrap().path().to_path_buf();
    let url = format!("smtp://mailer:mail-password@localhost:{}", sink.port);
    let app = app_mailing(&url, &clock, Some(&ca));
    let admin = app.admin_token();
    owned_client(&app, &admin, "secure", 5, Some("owner@example.com"));
    sink.wait_for(1);
    assert_eq!(
        sink.logins(),
        vec![("mailer".to_string(), "mail-password".to_string())]
    );
}

#[test]
fn a_password_is_never_sent_without_tls() {
    // A server that offers AUTH but no STARTTLS: with a password in the
    // URL, nothing is sent, and the notice says why.
    let sink = SmtpSink::start(false, true);
    let clock = ManualClock::starting_now();
    let url = format!("smtp://mailer:mail-password@127.0.0.1:{}", sink.port);
    let app = app_mailing(&url, &clock, None);
    let admin = app.admin_token();
    owned_client(&app, &admin, "careful", 5, Some("owner@example.com"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recorded = notices(&app, &admin);
        if recorded
            .first()
            .is_some_and(|n| n["attempts"].as_i64() >= Some(1))
        {
            assert!(recorded[0]["last_error"].is_string(), "{recorded:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sink.logins().is_empty(), "a password went in the clear");
    assert!(sink.mails().is_empty());
}

#[test]
fn without_smtp_notices_are_recorded_and_not_sent() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with({
        let clock = clock.clone();
        move |s| {
            s.notice_interval = 1;
            s.clock = Some(clock);
        }
    });
    let admin = app.admin_token();
    owned_client(&app, &admin, "unsent", 5, Some("owner@example.com"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices(&app, &admin).is_empty() {
        assert!(Instant::now() < deadline, "no notice recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let recorded = notices(&app, &admin);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["status"], "pending");
    assert_eq!(recorded[0]["attempts"], 0);
}

#[test]
fn a_tenants_owners_get_one_summary_a_day_of_their_subtree() {
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let app = app_mailing(&format!("smtp://127.0.0.1:{}", sink.port), &clock, None);
    let admin = app.admin_token();
    let tenant = app.admin(
        "POST",
        "/admin/v1/tenants",
        &admin,
        Some(json!({"name": "Printing EU", "owner_emails": ["boss@example.com", "deputy@example.com"]})),
    );
    assert_eq!(tenant.status, 201, "{}", tenant.body);
    let tenant_id = tenant.json()["id"].as_str().unwrap().to_string();
    for name in ["fleet-a", "fleet-b"] {
        let made = app.admin(
            "POST",
            "/admin/v1/clients",
            &admin,
            Some(json!({"name": name, "role": "reader", "tenant_id": tenant_id, "expires_in": 10 * DAY})),
        );
        assert_eq!(made.status, 201, "{}", made.body);
    }
    let mails = sink.wait_for(2);
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["boss@example.com", "deputy@example.com"]);
    let body = mails[0].data.replace("=\r\n", "");
    assert!(
        body.contains("fleet-a") && body.contains("fleet-b"),
        "{body}"
    );
    // The same day: nothing more. The next day: one more each.
    clock.advance(Duration::from_secs(DAY));
    sink.wait_for(4);
}

#[test]
fn two_servers_on_one_postgres_send_each_notice_once() {
    let Some(pg) =
        crate::helpers::postgres_or_skip("two_servers_on_one_postgres_send_each_notice_once")
    else {
        return;
    };
    let schema = pg.schema();
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let keys = tempfile::tempdir().unwrap();
    let nodes: Vec<TestApp> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let mut settings = test_settings(dir.path(), schema.url());
            settings.keys_dir = keys.path().to_path_buf();
            settings.smtp_url = Some(format!("smtp://127.0.0.1:{}", sink.port));
            settings.smtp_from = Some("keyward@example.com".into());
            settings.notice_interval = 1;
            settings.clock = Some(clock.clone());
            start(settings, dir, None)
        })
        .collect();
    let admin = nodes[0].admin_token();
    for i in 0..10 {
        owned_client(
            &nodes[0],
            &admin,
            &format!("shared-{i}"),
            20,
            Some(&format!("o{i}@example.com")),
        );
    }
    clock.advance(Duration::from_secs(6 * DAY + 60));
    let mails = sink.wait_for(10);
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 10, "{to:?}");
    let _ = IpAddr::from([127, 0, 0, 1]);
}

#[test]
fn a_reissue_starts_the_thresholds_again_and_a_replaced_string_gets_none() {
    let sink = SmtpSink::start(false, false);
    let clock = ManualClock::starting_now();
    let app = app_mailing(&format!("smtp://127.0.0.1:{}", sink.port), &clock, None);
    let admin = app.admin_token();
    let made = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(
            json!({"name": "cli-user", "role": "reader", "kind": "api_token",
                    "token_lifetime": "14d", "owner_email": "owner@example.com"}),
        ),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()["client_id"].as_str().unwrap().to_string();
    // A minute on, 14 days from expiry: the 14-day notice.
    clock.advance(Duration::from_secs(60));
    let first = sink.wait_for(1);
    assert!(
        subject(&first[0]).contains("in 14 days"),
        "{}",
        first[0].data
    );
    assert!(subject(&first[0]).contains("cli-user"), "{}", first[0].data);
    // Reissued: a new string with a fresh 14 days. The old string's 7-day
    // mark passes quietly; the new string starts at 14 again.
    let reissued = app.admin(
        "POST",
        &format!("/admin/v1/clients/{id}/tokens"),
        &admin,
        None,
    );
    assert_eq!(reissued.status, 201, "{}", reissued.body);
    clock.advance(Duration::from_secs(DAY));
    let mails = sink.wait_for(2);
    assert!(
        subject(&mails[1]).contains("in 13 days"),
        "{}",
        mails[1].data
    );
    let recorded = notices(&app, &admin);
    let strings: std::collections::HashSet<&str> = recorded
        .iter()
        .map(|n| n["target"].as_str().unwrap())
        .collect();
    assert_eq!(strings.len(), 1, "both about the one client");
    assert_eq!(recorded.len(), 2);
}

#[test]
fn notices_are_read_within_reach_and_need_audit_read() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with({
        let clock = clock.clone();
        move |s| {
            s.notice_interval = 1;
            s.clock = Some(clock);
        }
    });
    let admin = app.admin_token();
    let child = app.create_tenant("child", None);
    owned_client(
        &app,
        &admin,
        "root-owned",
        5,
        Some("root-owner@example.com"),
    );
    let made = app.admin(
        "POST",
        "/admin/v1/clients",
        &admin,
        Some(
            json!({"name": "child-owned", "role": "reader", "tenant_id": child,
                    "expires_in": 5 * DAY, "owner_email": "child-owner@example.com"}),
        ),
    );
    assert_eq!(made.status, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices(&app, &admin).len() < 2 {
        assert!(Instant::now() < deadline, "notices not recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let child_admin = app.tenant_admin(&child, None);
    let seen = app.admin("GET", "/admin/v1/notices", &child_admin, None);
    assert_eq!(seen.status, 200, "{}", seen.body);
    let items = seen.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0]["to"], "child-owner@example.com");
    let reader = app.tenant_admin(&app.root_tenant, Some(&["clients:read"]));
    app.admin("GET", "/admin/v1/notices", &reader, None)
        .assert_error(403, "insufficient_scope");
}

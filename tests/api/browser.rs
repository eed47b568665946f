//! The console in a real browser (API.md section 4, "The console"): Debian's
//! `chromium`, headless, driven over WebDriver through `chromium-driver` by
//! fantoccini. Each test clicks through one workflow of the vendor pages
//! end to end, runs axe-core on every page it sees, and, with
//! `KEYWARD_SCREENSHOTS=1`, writes the screenshots in docs/console/.
//!
//! They run when `chromedriver` is installed, and must run (failing loudly
//! without it) when `KEYWARD_TEST_BROWSER` is set, as `.ci/run` sets it; the
//! default `cargo test` on a machine with only Rust skips them, saying so.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, CliRunner, Signer, TestApp, TestIssuer};

const PASSWORD: &str = "correct horse battery";

/// axe-core's script, installed by `.ci/run` with npm.
fn axe_source() -> Option<String> {
    let path = std::env::var_os("KEYWARD_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(path).ok()
}

fn required() -> bool {
    std::env::var_os("KEYWARD_TEST_BROWSER").is_some_and(|v| !v.is_empty() && v != "0")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// chromium-driver, killed when the test ends.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(binary: &PathBuf) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = ureq::get(&format!("http://127.0.0.1:{port}/status"))
            .timeout(Duration::from_secs(2))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == json!(true));
        if ready {
            return driver;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver on port {port} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// WebDriver "Set Permission" (W3C Permissions): lets the page read the
/// clipboard, so a test can check what the copy button put there.
#[derive(Debug)]
struct GrantPermission(&'static str);

impl WebDriverCompatibleCommand for GrantPermission {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/permissions",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"descriptor": {"name": self.0}, "state": "granted"});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A headless chromium session against one test app.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    base: String,
    axe: Option<String>,
    /// Pages axe has checked in this test, by name.
    checked: std::cell::RefCell<Vec<String>>,
    _driver: Driver,
}

impl Browser {
    /// A browser for `app`, or None (the test is skipped, saying so) when
    /// chromedriver is not installed and the browser tests are not required.
    pub fn start(test: &str, app: &TestApp) -> Option<Browser> {
        let Some(chromedriver) = on_path("chromedriver") else {
            assert!(
                !required(),
                "KEYWARD_TEST_BROWSER is set but chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping {test}: chromedriver is not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let axe = axe_source();
        assert!(
            axe.is_some() || !required(),
            "KEYWARD_TEST_BROWSER is set but axe-core is missing (npm install --prefix target/axe axe-core)"
        );
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| on_path(name))
            .expect("chromium is installed beside chromedriver");
        let driver = start_driver(&chromedriver);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--force-device-scale-factor=1", "--hide-scrollbars",
                    "--lang=en-US"
                ]
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{}", driver.port);
        let client = rt
            .block_on(async {
                let mut builder =
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
                builder.capabilities(capabilities).connect(&url).await
            })
            .expect("a WebDriver session");
        Some(Browser {
            rt,
            client: Some(client),
            base: app.address.clone(),
            axe,
            checked: Default::default(),
            _driver: driver,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn go(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(self.client().goto(&url)).unwrap();
    }

    /// The path and query of the page shown.
    pub fn path(&self) -> String {
        let url = self.run(self.client().current_url()).unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.run(self.client().find(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("no {css} on {}: {e}\n{}", self.path(), self.text("body")))
    }

    pub fn exists(&self, css: &str) -> bool {
        !self
            .run(self.client().find_all(Locator::Css(css)))
            .unwrap()
            .is_empty()
    }

    pub fn text(&self, css: &str) -> String {
        let found = self.run(self.client().find(Locator::Css(css)));
        match found {
            Ok(element) => self.run(element.text()).unwrap(),
            Err(_) => String::new(),
        }
    }

    pub fn value(&self, css: &str) -> String {
        let element = self.find(css);
        self.run(element.prop("value")).unwrap().unwrap_or_default()
    }

    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.run(async {
            element.clear().await?;
            element.send_keys(text).await
        })
        .unwrap();
    }

    pub fn choose(&self, css: &str, value: &str) {
        let element = self.find(css);
        self.run(element.select_by_value(value)).unwrap();
    }

    /// Runs `act`, which leads to another page, and waits until that page
    /// has loaded: the old document carries a mark the new one lacks.
    fn navigating<T>(&self, act: impl FnOnce() -> T) -> T {
        self.script("window.__keywardOld = true;", vec![]);
        let out = act();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let loaded = self
                .run(self.client().execute(
                    "return window.__keywardOld === undefined && document.readyState === 'complete';",
                    vec![],
                ))
                .map(|v| v == json!(true))
                .unwrap_or(false);
            if loaded {
                return out;
            }
            assert!(Instant::now() < deadline, "no new page after the action");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks something that leads to another page, and waits for it.
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.navigating(|| self.run(element.click()).unwrap());
    }

    /// Clicks something that stays on the page (a checkbox, a copy button).
    pub fn toggle(&self, css: &str) {
        let element = self.find(css);
        self.run(element.click()).unwrap();
    }

    /// Clicks the button or link whose text is `label`, and waits for the
    /// page it leads to.
    pub fn click_labelled(&self, label: &str) {
        let xpath = format!("//*[self::button or self::a][normalize-space(.)='{label}']");
        let element = self
            .run(self.client().find(Locator::XPath(&xpath)))
            .unwrap_or_else(|e| panic!("no {label:?} on {}: {e}", self.path()));
        self.navigating(|| self.run(element.click()).unwrap());
    }

    pub fn has_labelled(&self, label: &str) -> bool {
        let xpath = format!("//*[self::button or self::a][normalize-space(.)='{label}']");
        !self
            .run(self.client().find_all(Locator::XPath(&xpath)))
            .unwrap()
            .is_empty()
    }

    /// Keys sent to whatever has the focus.
    pub fn keys(&self, keys: &str) {
        let active = self.run(self.client().active_element()).unwrap();
        self.run(active.send_keys(keys)).unwrap();
    }

    /// Enter on whatever has the focus, which leads to another page.
    pub fn enter(&self) {
        self.navigating(|| self.keys(&Key::Enter.to_string()));
    }

    /// The focused element's id, or its text.
    pub fn focused(&self) -> String {
        let active = self.run(self.client().active_element()).unwrap();
        let id = self.run(active.attr("id")).unwrap().unwrap_or_default();
        if id.is_empty() {
            self.run(active.text()).unwrap()
        } else {
            id
        }
    }

    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(self.client().execute(script, args)).unwrap()
    }

    pub fn grant(&self, permission: &'static str) {
        self.run(self.client().issue_cmd(GrantPermission(permission)))
            .unwrap();
    }

    pub fn clipboard(&self) -> String {
        let read = self.run(self.client().execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(done, e => done('error: ' + e));",
            vec![],
        ));
        read.unwrap().as_str().unwrap_or_default().to_string()
    }

    /// Signs in through the sign-in page; lands on the console.
    pub fn sign_in(&self, email: &str, password: &str) {
        self.go("/console/sign-in");
        self.fill("#email", email);
        self.fill("#password", password);
        self.click("form[action='/console/sign-in'] button[type=submit]");
    }

    /// axe-core on the page shown: no "serious" or "critical" violation.
    pub fn check(&self, name: &str) {
        let Some(axe) = &self.axe else {
            eprintln!("axe-core is missing: {name} not checked");
            return;
        };
        let client = self.client();
        self.run(client.execute(&format!("{axe}\nreturn true;"), vec![]))
            .expect("axe-core loads");
        let result = self
            .run(client.execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                    .then(r => done(JSON.stringify({passes: r.passes.length, violations: r.violations.map(v => ({
                        id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(' '))
                    }))})))
                    .catch(e => done(JSON.stringify({passes: 0, violations: [{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]})));",
                vec![],
            ))
            .unwrap();
        let result: Value = serde_json::from_str(result.as_str().unwrap_or("{}")).unwrap();
        // axe ran its rules: some passed (a blank result would pass anything).
        assert!(
            result["passes"].as_u64() > Some(10),
            "axe on {name}: {result}"
        );
        let violations = result["violations"].as_array().cloned().unwrap_or_default();
        if !violations.is_empty() {
            eprintln!(
                "axe-core on {name}, minor: {}",
                Value::Array(violations.clone())
            );
        }
        let grave: Vec<&Value> = violations
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect();
        assert!(
            grave.is_empty(),
            "axe-core on {name} ({}): {}",
            self.path(),
            serde_json::to_string_pretty(&grave).unwrap()
        );
        self.checked.borrow_mut().push(name.to_string());
    }

    /// With `KEYWARD_SCREENSHOTS=1`: the page at 1280 and 390 pixels wide,
    /// as docs/console/<name>-<width>.png.
    pub fn screenshot(&self, name: &str) {
        if std::env::var_os("KEYWARD_SCREENSHOTS").is_none_or(|v| v.is_empty() || v == "0") {
            return;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        let client = self.client();
        for (width, height) in [(1280u32, 900u32), (390, 844)] {
            self.run(client.set_window_size(width, height)).unwrap();
            // Whole page: as tall as its content.
            let tall = self
                .script(
                    "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);",
                    vec![],
                )
                .as_u64()
                .unwrap_or(height as u64) as u32;
            self.run(client.set_window_size(width, tall.clamp(height, 4000)))
                .unwrap();
            let png = self.run(client.screenshot()).unwrap();
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        }
        self.run(client.set_window_size(1280, 900)).unwrap();
    }

    /// Both: the page is checked, and pictured when asked.
    pub fn look(&self, name: &str) {
        self.check(name);
        self.screenshot(name);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
        }
    }
}

/// An admin person with a password, made through the admin API.
fn person(app: &TestApp, admin: &str, email: &str, name: &str, role: &str) -> String {
    let created = app.admin(
        "POST",
        "/admin/v1/users",
        admin,
        Some(json!({"email": email, "name": name, "role": role, "password": PASSWORD})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    created.json()["user_id"].as_str().unwrap().to_string()
}

fn client(app: &TestApp, admin: &str, body: Value) -> Value {
    let made = app.admin("POST", "/admin/v1/clients", admin, Some(body));
    assert_eq!(made.status, 201, "{}", made.body);
    made.json()
}

fn client_status(app: &TestApp, admin: &str, id: &str) -> String {
    let got = app.admin("GET", &format!("/admin/v1/clients/{id}"), admin, None);
    assert_eq!(got.status, 200, "{}", got.body);
    got.json()["status"].as_str().unwrap().to_string()
}

/// Whether the client id and secret get an access token.
fn secret_works(app: &TestApp, id: &str, secret: &str) -> bool {
    app.request("POST", "/oauth/token")
        .unchecked()
        .basic(id, secret)
        .send_form(&[("grant_type", "client_credentials")])
        .status
        == 200
}

/// Whether the API token is accepted as a bearer credential.
fn api_token_works(app: &TestApp, token: &str) -> bool {
    app.request("GET", "/admin/v1/me")
        .unchecked()
        .bearer(token)
        .send()
        .status
        == 200
}

#[test]
fn the_first_person_is_made_with_the_cli_chooses_a_password_through_the_setup_link_and_signs_in() {
    let app = spawn_app();
    let Some(browser) = Browser::start("first person", &app) else {
        return;
    };
    let cli = CliRunner::for_app(&app);
    let created = cli.json(&[
        "user",
        "create",
        "--email",
        "grace@example.com",
        "--name",
        "Grace Hopper",
        "--role",
        "admin",
        "--json",
    ]);
    let url = created["setup_url"].as_str().expect("a setup link");
    let path = &url[url.find("/console/setup?token=").expect("the setup path")..];

    browser.go(path);
    browser.look("setup");
    browser.fill("#password", "short");
    // The browser itself refuses a short password (minlength); the server
    // refuses it too: sent anyway, the page says why.
    browser.script(
        "document.getElementById('password').removeAttribute('minlength');",
        vec![],
    );
    browser.click("button[type=submit]");
    assert!(
        browser.text("main").contains("12"),
        "{}",
        browser.text("main")
    );
    browser.go(path);
    browser.fill("#password", PASSWORD);
    browser.click("button[type=submit]");
    assert_eq!(browser.path(), "/console/sign-in");

    // The link works once.
    browser.go(path);
    browser.fill("#password", "another long password");
    browser.click("button[type=submit]");
    assert!(
        browser.text("h1").contains("no longer works"),
        "{}",
        browser.text("main")
    );

    browser.go("/console/sign-in");
    browser.look("sign-in");
    browser.fill("#email", "grace@example.com");
    browser.fill("#password", "not the password");
    browser.click("button[type=submit]");
    assert!(browser
        .text("[role=alert]")
        .contains("Wrong email or password"));

    browser.sign_in("grace@example.com", PASSWORD);
    assert_eq!(browser.path(), "/console");
    assert_eq!(browser.text("h1"), "Client credentials");
    assert!(browser.text(".account-name").contains("Grace Hopper"));
    browser.look("clients");
    browser.click_labelled("Sign out");
    assert_eq!(browser.path(), "/console/sign-in");
    browser.go("/console");
    assert_eq!(browser.path(), "/console/sign-in");
}

#[test]
fn an_api_token_is_created_copied_from_the_dialog_shown_once_and_works() {
    let app = spawn_app();
    let Some(browser) = Browser::start("api token", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada Lovelace", "admin");
    browser.sign_in("ada@example.com", PASSWORD);
    browser.click_labelled("API tokens");
    assert_eq!(browser.path(), "/console/tokens");
    browser.look("tokens");
    browser.click_labelled("New API token");
    browser.look("new-token");
    browser.fill("#name", "Nightly export");
    browser.choose("#role", "admin");
    browser.choose("#expires_in", "1m");
    browser.fill("#owner_email", "ops@example.com");
    browser.click_labelled("Create API token");

    assert_eq!(browser.text("#shown-title"), "API token created");
    assert!(browser
        .text("#shown-warning")
        .contains("it will not be shown again"));
    let token = browser.value("#credential");
    assert!(token.starts_with("kwt_"), "{token}");
    browser.grant("clipboard-read");
    browser.grant("clipboard-write");
    browser.toggle("button[data-copy]");
    assert_eq!(browser.text("button[data-copy]"), "Copied");
    assert_eq!(browser.clipboard(), token);
    browser.look("shown-once");

    // The token works as a bearer credential.
    assert!(api_token_works(&app, &token));

    // Shown once: the details page and the list never show it.
    browser.click_labelled("Done");
    assert!(browser.path().starts_with("/console/clients/"));
    assert!(!browser.text("body").contains(&token));
    browser.look("client");
    browser.go("/console/tokens");
    assert!(browser.text("table").contains("Nightly export"));
    assert!(!browser.text("body").contains(&token));
    browser.go("/console/tokens");
    browser.navigating(|| browser.run(browser.client().back()).unwrap());
    assert!(!browser.text("body").contains(&token));

    // Disabled, it may be deleted (after a confirmation); then it stops.
    browser.go("/console/tokens");
    browser.click_labelled("Nightly export");
    browser.click_labelled("Disable");
    assert!(!api_token_works(&app, &token));
    browser.click_labelled("Delete…");
    browser.look("delete");
    browser.click_labelled("Delete Nightly export");
    assert_eq!(browser.path(), "/console/tokens?notice=deleted");
    assert!(!browser.text("body").contains("Nightly export"));
}

#[test]
fn lists_filter_by_status_role_and_tenant_in_the_url_and_show_revoked_on_request() {
    let app = spawn_app();
    let Some(browser) = Browser::start("filters", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    client(
        &app,
        &admin,
        json!({"name": "billing-sync", "role": "reader"}),
    );
    let gone = client(
        &app,
        &admin,
        json!({"name": "old-importer", "role": "reader"}),
    );
    let gone_id = gone["client_id"].as_str().unwrap();
    let revoked = app.admin(
        "POST",
        &format!("/admin/v1/clients/{gone_id}/revoke"),
        &admin,
        None,
    );
    assert_eq!(revoked.status, 200);
    client(&app, &admin, json!({"name": "ops-robot", "role": "admin"}));

    browser.sign_in("ada@example.com", PASSWORD);
    let table = browser.text("table");
    assert!(table.contains("billing-sync") && table.contains("ops-robot"));
    assert!(!table.contains("old-importer"));

    browser.fill("#role", "reader");
    browser.click_labelled("Apply");
    assert_eq!(browser.path(), "/console?status=&role=reader&tenant_id=");
    let table = browser.text("table");
    assert!(table.contains("billing-sync") && !table.contains("ops-robot"));

    browser.toggle("#show_revoked");
    browser.click_labelled("Apply");
    assert!(
        browser.path().contains("show_revoked=1"),
        "{}",
        browser.path()
    );
    let table = browser.text("table");
    assert!(table.contains("old-importer") && table.contains("billing-sync"));

    browser.choose("#status", "revoked");
    browser.click_labelled("Apply");
    let table = browser.text("table");
    assert!(table.contains("old-importer") && !table.contains("billing-sync"));
    // The filters stay in the URL: reloading shows the same.
    browser.navigating(|| browser.run(browser.client().refresh()).unwrap());
    assert_eq!(browser.value("#status"), "revoked");
    assert_eq!(browser.value("#role"), "reader");
    browser.click_labelled("Reset");
    assert_eq!(browser.path(), "/console");
}

#[test]
fn a_client_is_disabled_enabled_revoked_after_a_confirmation_naming_it_and_deleted() {
    let app = spawn_app();
    let Some(browser) = Browser::start("lifecycle", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let made = client(
        &app,
        &admin,
        json!({"name": "edge-gateway", "role": "reader"}),
    );
    let id = made["client_id"].as_str().unwrap();
    let secret = made["client_secret"].as_str().unwrap();
    assert!(secret_works(&app, id, secret));

    browser.sign_in("ada@example.com", PASSWORD);
    browser.click_labelled("edge-gateway");
    assert_eq!(browser.path(), format!("/console/clients/{id}"));
    // Active: no delete offered.
    assert!(!browser.has_labelled("Delete"));

    browser.click_labelled("Disable");
    assert!(browser.text("[role=status]").starts_with("Disabled"));
    assert_eq!(client_status(&app, &admin, id), "disabled");
    assert!(!secret_works(&app, id, secret));

    browser.click_labelled("Enable");
    assert_eq!(browser.text("[role=status]"), "Enabled.");
    assert_eq!(client_status(&app, &admin, id), "active");
    assert!(secret_works(&app, id, secret));

    browser.click_labelled("Edit");
    browser.look("edit");
    browser.fill("#name", "edge-gateway-eu");
    browser.fill("#allowed_ips", "10.0.0.0/8");
    browser.fill("#owner", "Ops team");
    browser.fill("#owner_email", "ops@example.com");
    browser.toggle("#can_renew");
    browser.choose("#expiry", "3m");
    browser.fill(
        "#metadata",
        r#"{"type": "embedded", "allow_unauthenticated": true}"#,
    );
    browser.click_labelled("Save");
    assert_eq!(browser.text("[role=status]"), "Saved.");
    assert!(browser.text("h1").contains("edge-gateway-eu"));
    let facts = browser.text(".facts");
    for shown in [
        "10.0.0.0/8",
        "Ops team",
        "ops@example.com",
        "tokens may be renewed",
        "\"embedded\"",
    ] {
        assert!(facts.contains(shown), "{shown} in {facts}");
    }
    let stored = app
        .admin("GET", &format!("/admin/v1/clients/{id}"), &admin, None)
        .json();
    assert_eq!(stored["metadata"]["type"], "embedded");
    assert_eq!(stored["can_renew"], true);
    assert!(stored["expires_at"].is_string());
    // Role, tenant and kind are fixed: the edit form does not offer them.
    browser.click_labelled("Edit");
    assert!(!browser.exists("#role") && !browser.exists("#tenant_id"));
    browser.click_labelled("Cancel");

    browser.click_labelled("Revoke…");
    browser.look("revoke");
    assert!(browser.text("h1").contains("Revoke “edge-gateway-eu”?"));
    assert!(browser.text("main").contains(id));
    // Cancel changes nothing.
    browser.click_labelled("Cancel");
    assert_eq!(client_status(&app, &admin, id), "active");
    browser.click_labelled("Revoke…");
    browser.click_labelled("Revoke edge-gateway-eu");
    assert!(browser.text("[role=status]").starts_with("Revoked"));
    assert_eq!(client_status(&app, &admin, id), "revoked");
    assert!(!secret_works(&app, id, secret));
    // Revoked: no way back, and now it may be deleted, after a confirmation.
    assert!(!browser.has_labelled("Enable"));
    browser.click_labelled("Delete…");
    assert!(browser.text("h1").contains("Delete “edge-gateway-eu”?"));
    browser.click_labelled("Delete edge-gateway-eu");
    assert_eq!(browser.path(), "/console?notice=deleted");
    assert_eq!(browser.text("[role=status]"), "Deleted.");
    let gone = app.admin("GET", &format!("/admin/v1/clients/{id}"), &admin, None);
    assert_eq!(gone.status, 404);
}

#[test]
fn a_new_secret_with_a_grace_period_keeps_the_old_one_working_and_a_token_is_reissued() {
    let app = spawn_app();
    let Some(browser) = Browser::start("new secret", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    let made = client(&app, &admin, json!({"name": "ledger", "role": "reader"}));
    let id = made["client_id"].as_str().unwrap();
    let old = made["client_secret"].as_str().unwrap();

    browser.sign_in("ada@example.com", PASSWORD);
    browser.go(&format!("/console/clients/{id}"));
    browser.choose("#grace_seconds", "3600");
    browser.click_labelled("New secret");
    assert_eq!(browser.text("#shown-title"), "New client secret");
    assert!(browser.text("main").contains("keeps working for 1 hour"));
    let new = browser.value("#credential");
    assert!(new.starts_with("kws_") && new != old);
    assert!(secret_works(&app, id, &new));
    assert!(
        secret_works(&app, id, old),
        "the grace period keeps the old"
    );

    // Without grace, the old stops at once.
    browser.click_labelled("Done");
    browser.choose("#grace_seconds", "0");
    browser.click_labelled("New secret");
    let newest = browser.value("#credential");
    assert!(secret_works(&app, id, &newest));
    assert!(!secret_works(&app, id, &new));

    let token = client(
        &app,
        &admin,
        json!({"name": "cli-user", "role": "admin", "kind": "api_token"}),
    );
    let token_id = token["client_id"].as_str().unwrap();
    let first = token["token"].as_str().unwrap();
    assert!(api_token_works(&app, first));
    browser.go(&format!("/console/clients/{token_id}"));
    browser.click_labelled("Reissue token");
    assert_eq!(browser.text("#shown-title"), "API token reissued");
    let second = browser.value("#credential");
    assert!(second.starts_with("kwt_") && second != first);
    assert!(api_token_works(&app, &second));
    // API.md 3: earlier token strings keep working until their own expiry.
    assert!(api_token_works(&app, first));
    // The details page lists both strings by their first characters only.
    browser.click_labelled("Done");
    let issued = browser.text("#issued-title ~ .table-wrap");
    assert_eq!(issued.matches("kwt_").count(), 2, "{issued}");
    assert!(!issued.contains(&second) && !issued.contains(first));
    // Revoking the API token stops every string it was issued.
    browser.click_labelled("Revoke…");
    assert!(browser.text("h1").contains("Revoke “cli-user”?"));
    browser.click_labelled("Revoke cli-user");
    assert!(browser.text("[role=status]").starts_with("Revoked"));
    assert!(!api_token_works(&app, first));
    assert!(!api_token_works(&app, &second));
}

#[test]
fn a_reader_is_offered_no_changes_and_a_forged_form_is_refused() {
    let app = spawn_app();
    let Some(browser) = Browser::start("reader", &app) else {
        return;
    };
    let admin = app.admin_token();
    let role = app.admin(
        "POST",
        "/admin/v1/roles",
        &admin,
        Some(json!({"name": "viewer", "scopes": ["clients:read", "tenants:read"]})),
    );
    assert_eq!(role.status, 201, "{}", role.body);
    person(&app, &admin, "rita@example.com", "Rita Reader", "viewer");
    let made = client(&app, &admin, json!({"name": "payments", "role": "reader"}));
    let id = made["client_id"].as_str().unwrap();

    browser.sign_in("rita@example.com", PASSWORD);
    assert_eq!(browser.path(), "/console");
    assert!(browser.text("table").contains("payments"));
    assert!(!browser.has_labelled("New client credential"));
    browser.go("/console/tokens");
    assert!(!browser.has_labelled("New API token"));
    browser.go(&format!("/console/clients/{id}"));
    for change in ["Edit", "Disable", "New secret", "Revoke…", "Delete"] {
        assert!(
            !browser.has_labelled(change),
            "{change} is offered to a reader"
        );
    }
    assert!(!browser.text("nav.sections").contains("Users"));
    browser.look("reader-client");

    // A form the page never offered, built in the page with the session's
    // own CSRF token and sent: refused, and nothing changes.
    let csrf = browser
        .run(
            browser
                .find("form[action='/console/sign-out'] input[name=csrf_token]")
                .prop("value"),
        )
        .unwrap()
        .unwrap();
    browser.navigating(|| {
        browser.script(
            "const f = document.createElement('form');
         f.method = 'post'; f.action = arguments[0];
         const t = document.createElement('input');
         t.type = 'hidden'; t.name = 'csrf_token'; t.value = arguments[1];
         f.appendChild(t); document.body.appendChild(f); f.submit();",
            vec![json!(format!("/console/clients/{id}/disable")), json!(csrf)],
        )
    });
    assert_eq!(browser.text("h1"), "Not allowed");
    assert!(browser.text("main").contains("clients:write"));
    assert_eq!(client_status(&app, &admin, id), "active");

    // From another site's page, no CSRF token: refused the same.
    browser.go(&format!("/console/clients/{id}"));
    browser.navigating(|| {
        browser.script(
            "const f = document.createElement('form');
         f.method = 'post'; f.action = arguments[0];
         document.body.appendChild(f); f.submit();",
            vec![json!(format!("/console/clients/{id}/revoke"))],
        )
    });
    assert_eq!(browser.text("h1"), "Not allowed");
    assert_eq!(client_status(&app, &admin, id), "active");
}

#[test]
fn disabling_a_person_ends_their_session_at_once() {
    let app = spawn_app();
    let Some(browser) = Browser::start("session ended", &app) else {
        return;
    };
    let admin = app.admin_token();
    let user_id = person(&app, &admin, "sam@example.com", "Sam", "admin");
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    browser.sign_in("sam@example.com", PASSWORD);
    assert_eq!(browser.path(), "/console");

    // Ada disables Sam from the users page, in a second browser.
    let other = Browser::start("session ended, second browser", &app).unwrap();
    other.sign_in("ada@example.com", PASSWORD);
    other.click_labelled("Users");
    other.look("users");
    other.find(&format!("form[action='/console/users/{user_id}/edit']"));
    other.script(
        "document.querySelector(arguments[0]).closest('details').open = true;",
        vec![json!(format!(
            "form[action='/console/users/{user_id}/edit']"
        ))],
    );
    other.choose(&format!("#status-{user_id}"), "disabled");
    other.click_labelled("Save Sam");
    assert_eq!(other.text("[role=status]"), "Saved.");

    browser.go("/console/tokens");
    assert_eq!(browser.path(), "/console/sign-in");
    browser.sign_in("sam@example.com", PASSWORD);
    assert_eq!(browser.path(), "/console/sign-in");
}

#[test]
fn a_person_creates_regenerates_and_deletes_their_personal_key_in_my_profile() {
    let app = spawn_app();
    let Some(browser) = Browser::start("personal key", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    browser.sign_in("ada@example.com", PASSWORD);
    browser.click(".account-name");
    assert_eq!(browser.path(), "/console/profile");
    browser.look("profile");
    browser.click_labelled("Create personal key");
    assert_eq!(
        browser.text("#shown-title"),
        "Personal API access key created"
    );
    let secret = browser.value("#credential");
    let id = browser.text("dialog code");
    assert!(secret_works(&app, &id, &secret));

    browser.click_labelled("Back to my profile");
    assert!(browser.text("#key-title + p + dl").contains(&id));
    browser.click_labelled("Regenerate secret…");
    assert_eq!(browser.text("h1"), "Regenerate your key's secret?");
    // Cancel keeps the secret.
    browser.click_labelled("Cancel");
    assert!(secret_works(&app, &id, &secret));
    browser.click_labelled("Regenerate secret…");
    browser.click_labelled("Regenerate secret");
    let second = browser.value("#credential");
    assert!(secret_works(&app, &id, &second));
    assert!(!secret_works(&app, &id, &secret));

    browser.click_labelled("Back to my profile");
    browser.click_labelled("Delete key…");
    assert_eq!(browser.text("h1"), "Delete your personal API access key?");
    browser.click_labelled("Delete key");
    assert!(browser.text("[role=status]").contains("deleted"));
    assert!(!secret_works(&app, &id, &second));
    assert!(browser.has_labelled("Create personal key"));

    // Password change: the form on the same page.
    browser.fill("#current_password", PASSWORD);
    browser.fill("#new_password", "an even better password");
    browser.fill("#confirm_password", "an even better password");
    browser.click_labelled("Change password");
    assert!(browser.text("[role=status]").contains("Password changed"));
    browser.click_labelled("Sign out");
    browser.sign_in("ada@example.com", "an even better password");
    assert_eq!(browser.path(), "/console");
}

#[test]
fn the_create_form_and_the_shown_once_dialog_work_with_the_keyboard_alone() {
    let app = spawn_app();
    let Some(browser) = Browser::start("keyboard", &app) else {
        return;
    };
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada", "admin");
    browser.sign_in("ada@example.com", PASSWORD);
    browser.go("/console/clients/new");
    // The name field has the focus; Tab goes through the form in order.
    assert_eq!(browser.focused(), "name");
    browser.keys("keyboard-made");
    browser.keys(&Key::Tab.to_string());
    assert_eq!(browser.focused(), "role");
    // A select takes the first option starting with the letters typed.
    browser.keys("reader");
    browser.keys(&Key::Tab.to_string());
    assert_eq!(browser.focused(), "tenant_id");
    browser.keys(&Key::Tab.to_string());
    assert_eq!(browser.focused(), "device_group_id");
    // Back to the name, and Enter sends the form.
    browser.keys(&(Key::Shift + &Key::Tab.to_string()));
    browser.keys(&(Key::Shift + &Key::Tab.to_string()));
    browser.keys(&(Key::Shift + &Key::Tab.to_string()));
    assert_eq!(browser.focused(), "name");
    browser.enter();
    assert_eq!(browser.text("#shown-title"), "Client credential created");
    // In the dialog: the copy button has the focus, Enter copies, Tab
    // reaches "Done", Enter follows it.
    browser.grant("clipboard-read");
    browser.grant("clipboard-write");
    assert_eq!(browser.focused(), "Copy");
    browser.keys(&Key::Enter.to_string());
    assert_eq!(browser.text("button[data-copy]"), "Copied");
    assert_eq!(browser.clipboard(), browser.value("#credential"));
    browser.keys(&Key::Tab.to_string());
    assert_eq!(browser.focused(), "Done");
    browser.enter();
    assert!(browser.path().starts_with("/console/clients/"));
    assert!(browser.text("h1").contains("keyboard-made"));
    let table = app.admin("GET", "/admin/v1/clients?role=reader", &admin, None);
    assert!(table.body.contains("keyboard-made"));
}

#[test]
fn every_page_passes_axe_core_and_offers_what_its_sections_need() {
    let app = spawn_app_with(|s| {
        s.notice_interval = 1;
        // The trusted issuer below is served on loopback.
        s.allow_insecure_jwks = true;
    });
    let Some(browser) = Browser::start("every page", &app) else {
        return;
    };
    let issuer = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "cluster-1")]);
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada Lovelace", "admin");
    let child = app.create_tenant("Printing EU", Some(&app.root_tenant));
    app.create_tenant("Lyon office", Some(&child));
    crate::helpers::insert_device_group(&app, &child, "Floor 2 printers");
    client(
        &app,
        &admin,
        json!({"name": "fleet-sync", "role": "reader", "tenant_id": child, "expires_in": "7d", "owner_email": "fleet@example.com"}),
    );
    browser.sign_in("ada@example.com", PASSWORD);

    browser.click_labelled("Tenants");
    browser.look("tenants");
    let tree = browser.text(".tree");
    let (root, eu, lyon) = (
        tree.find("Printing EU").unwrap(),
        tree.find("Printing EU").unwrap(),
        tree.find("Lyon office").unwrap(),
    );
    assert!(root <= eu && eu < lyon, "{tree}");
    assert!(browser.exists(".indent-2"), "Lyon is two levels down");
    browser.fill("#tenant-name", "Printing US");
    browser.click_labelled("Create tenant");
    assert_eq!(browser.text("[role=status]"), "Created.");
    assert!(browser.text(".tree").contains("Printing US"));

    browser.click_labelled("Device groups");
    browser.look("device-groups");
    assert!(browser.text("table").contains("Floor 2 printers"));
    browser.fill("#group-name", "Kiosks");
    browser.click_labelled("Create device group");
    assert!(browser.text("table").contains("Kiosks"));

    browser.click_labelled("Roles");
    browser.look("roles");
    browser.fill("#role-name", "auditor");
    browser.fill("#role-scopes", "audit:read");
    browser.click_labelled("Create role");
    assert!(browser.text("table").contains("auditor"));

    browser.click_labelled("Trusted issuers");
    assert!(browser.text("main").contains("No trusted issuers yet"));
    browser.fill("#issuer-issuer", &issuer.url);
    browser.fill("#issuer-description", "Printing EU's cluster");
    browser.choose("#issuer-tenant", &child);
    browser.click_labelled("Trust issuer");
    assert_eq!(browser.text("[role=status]"), "Created.");
    let table = browser.text("table");
    assert!(
        table.contains(&issuer.url) && table.contains("its discovery document"),
        "{table}"
    );
    browser.look("trusted-issuers");

    browser.click_labelled("Users");
    browser.fill("#user-email", "new.person@example.com");
    browser.fill("#user-name", "New Person");
    browser.choose("#user-role", "auditor");
    browser.click_labelled("Create person");
    assert_eq!(browser.text("#shown-title"), "Person created");
    assert!(browser
        .value("#credential")
        .contains("/console/setup?token="));
    browser.look("setup-link");

    browser.click_labelled("Audit");
    browser.look("audit");
    assert!(browser.text("table").contains("user.create"));
    browser.fill("#action", "tenant.create");
    browser.click_labelled("Apply");
    let audit = browser.text("table");
    assert!(
        audit.contains("tenant.create") && !audit.contains("user.create"),
        "{audit}"
    );

    // The notices page: fleet-sync's owner is due one (7 days left),
    // recorded at the server's next look (no SMTP here: not sent).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        browser.go("/console/notices");
        if browser.text("main").contains("fleet@example.com") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", browser.text("main"));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(browser.text("table").contains("pending"));
    browser.look("notices");

    browser.click_labelled("Client credentials");
    assert!(
        browser.exists(".row-expiring"),
        "expiring within 14 days is marked"
    );
    assert!(browser.text(".row-expiring").contains("Expires in 7 days"));
    browser.click_labelled("New client credential");
    browser.look("new-client");
    // A mistake comes back as the form, filled in, saying what.
    browser.fill("#name", "bad-ips");
    browser.choose("#role", "reader");
    browser.fill("#allowed_ips", "not-an-address");
    browser.click_labelled("Create client credential");
    assert!(browser.text("[role=alert]").contains("not-an-address"));
    assert_eq!(browser.value("#name"), "bad-ips");
    browser.look("form-error");

    browser.go("/console/clients/no-such-client");
    assert_eq!(browser.text("h1"), "Not found");
    browser.look("not-found");
    assert_eq!(
        browser.checked.borrow().len(),
        10,
        "{:?}",
        browser.checked.borrow()
    );
}

#[test]
fn a_private_key_jwt_client_answering_to_a_trusted_issuer_is_made_and_edited_and_the_issuer_then_removed(
) {
    let app = spawn_app_with(|s| s.allow_insecure_jwks = true);
    let Some(browser) = Browser::start("private_key_jwt", &app) else {
        return;
    };
    let keys = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "ci-1")]);
    let admin = app.admin_token();
    person(&app, &admin, "ada@example.com", "Ada Lovelace", "admin");
    browser.sign_in("ada@example.com", PASSWORD);

    browser.click_labelled("Trusted issuers");
    browser.fill("#issuer-issuer", "https://token.actions.example");
    browser.fill("#issuer-jwks-uri", &keys.jwks_uri());
    browser.fill("#issuer-description", "CI workflows of acme/app");
    browser.click_labelled("Trust issuer");
    assert_eq!(browser.text("[role=status]"), "Created.");

    browser.click_labelled("Client credentials");
    browser.click_labelled("New client credential");
    browser.fill("#name", "deployer");
    browser.choose("#role", "reader");
    browser.choose("#token_endpoint_auth_method", "private_key_jwt");
    browser.fill(
        "#jwks",
        &Signer::jwks(&[&Signer::new(Algorithm::EdDSA, "k1")]).to_string(),
    );
    browser.fill(
        "#federated_subjects",
        "https://token.actions.example repo:acme/app:ref:refs/heads/main",
    );
    browser.look("new-client-keys");
    browser.click_labelled("Create client credential");
    // No secret, so no dialog: the client's page says how it authenticates.
    assert!(
        browser.path().ends_with("?notice=created-keys"),
        "{}",
        browser.path()
    );
    assert!(!browser.exists("dialog"));
    assert!(browser
        .text("[role=status]")
        .contains("there is no secret to copy"));
    let facts = browser.text(".facts");
    assert!(facts.contains("(private_key_jwt)"), "{facts}");
    assert!(facts.contains("1 key: k1"), "{facts}");
    assert!(
        facts.contains("https://token.actions.example repo:acme/app:ref:refs/heads/main"),
        "{facts}"
    );
    assert!(!browser.has_labelled("New secret"));
    browser.look("client-keys");

    // The keys move to a URL, fetched as the form is saved.
    browser.click_labelled("Edit");
    assert!(browser.text("main").contains("fixed at creation"));
    browser.look("edit-keys");
    browser.fill("#jwks", "");
    browser.fill("#jwks_uri", &keys.jwks_uri());
    browser.click_labelled("Save");
    assert_eq!(browser.text("[role=status]"), "Saved.");
    let facts = browser.text(".facts");
    assert!(facts.contains(&keys.jwks_uri()), "{facts}");
    assert!(!facts.contains("1 key: k1"), "{facts}");

    // Removing the issuer asks first, and is refused while a client names it.
    browser.click_labelled("Trusted issuers");
    browser.click_labelled("Delete… https://token.actions.example");
    assert_eq!(
        browser.text("h1"),
        "Stop trusting https://token.actions.example?"
    );
    browser.look("trusted-issuer-delete");
    browser.click_labelled("Stop trusting");
    assert_eq!(browser.text("h1"), "That did not work");
    assert!(browser.text("main").contains("federated_subjects"));
    let issuers = app.admin("GET", "/admin/v1/trusted-issuers", &admin, None);
    assert!(issuers.body.contains("https://token.actions.example"));
}

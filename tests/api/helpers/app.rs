//! `TestApp`: the real application on port 0 with its own keys, data
//! directory and store, and shortcuts that set up its state through the
//! service layer or the store.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use keyward::service::clients::{self, ClientView, IssuedCredential, NewClient};
use keyward::service::scopes::ScopeSet;
use keyward::service::{tenants, Actor};
use keyward::store::AnyConnection;
use keyward::tokens::keys::SigningAlg;
use keyward::{Application, Settings};

use super::{connect, new_store, Auth, PgSchema};

pub struct TestApp {
    pub address: String,

    pub settings: Settings,
    /// The PostgreSQL application_name of this node's change listener.
    pub listener_name: String,
    /// This node's database round trips so far.
    pub db_operations: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The node's own store gateway: writes through it reach its cache.
    pub db: keyward::store::Db,
    pub admin_id: String,
    pub admin_secret: String,
    pub root_tenant: String,
    _dir: tempfile::TempDir,
    handle: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Dropped last: the server must stop before its schema goes.
    _schema: Option<PgSchema>,
}

pub fn test_settings(dir: &std::path::Path, database_url: String) -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".into();
    settings.data_dir = dir.join("data");
    settings.keys_dir = dir.join("keys");
    settings.database_url = Some(database_url);
    settings.db_pool_size = 4;
    settings.workers = Some(1);
    settings
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

pub fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, schema) = new_store(dir.path());
    let mut settings = test_settings(dir.path(), url);
    configure(&mut settings);
    start(settings, dir, schema)
}

pub fn start(settings: Settings, dir: tempfile::TempDir, schema: Option<PgSchema>) -> TestApp {
    let (tx, rx) = mpsc::channel();
    let server_settings = settings.clone();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match Application::build(server_settings) {
                Ok(app) => {
                    let _ = tx.send(Ok((
                        app.port(),
                        app.server_handle(),
                        app.listener_name(),
                        app.db_operations(),
                        app.db(),
                    )));
                    let _ = app.run_until_stopped().await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
    });
    let (port, handle, listener_name, db_operations, db) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("app did not start in time")
        .unwrap_or_else(|e| panic!("app failed to start: {e}"));
    let bootstrap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(settings.data_dir.join("bootstrap-admin.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),

        admin_id: bootstrap["client_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        admin_secret: bootstrap["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        root_tenant: bootstrap["tenant_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        settings,
        listener_name,
        db_operations,
        db,
        _dir: dir,
        handle: Some(handle),
        thread: Some(thread),
        _schema: schema,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            actix_web::rt::System::new().block_on(handle.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestApp {
    /// A token for `id`/`secret` by client_secret_basic; panics unless 200.
    pub fn token_for(&self, id: &str, secret: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let response = self.post_form("/oauth/token", &form, Auth::Basic(id, secret));
        assert_eq!(
            response.status, 200,
            "token request failed: {}",
            response.body
        );
        response.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn admin_token(&self) -> String {
        self.token_for(&self.admin_id, &self.admin_secret, &[])
    }

    pub fn introspect(&self, token: &str) -> serde_json::Value {
        let response = self.post_form(
            "/oauth/introspect",
            &[("token", token)],
            Auth::Basic(&self.admin_id, &self.admin_secret),
        );
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()
    }

    /// A direct connection to this app's store.
    pub fn conn(&self) -> AnyConnection {
        connect(&self.settings.database_url()).expect("store connection")
    }

    /// The CLI's view of things: an admin of the root tenant.
    pub fn root_actor(&self) -> Actor {
        let mut conn = self.conn();
        let root = tenants::root(&mut conn).unwrap().unwrap();
        Actor {
            name: "test".into(),
            client_id: None,
            user_id: None,
            tenant_id: root.id.to_string(),
            tenant_path: root.path.to_string(),
            scopes: ScopeSet::all_admin(),
            ip: None,
        }
    }

    /// Registers a client through the service layer.
    pub fn create_client(&self, request: NewClient) -> (ClientView, String) {
        let actor = self.root_actor();
        let (view, credential) = self
            .db
            .run_here(|conn| clients::register(conn, &actor, request))
            .unwrap_or_else(|e: keyward::service::ServiceError| panic!("register failed: {e}"));
        let secret = match credential {
            IssuedCredential::ClientSecret(s) => s.expose().to_string(),
            IssuedCredential::ApiToken { token, .. } => token.expose().to_string(),
            // A private_key_jwt client: its keys are its credential.
            IssuedCredential::Nothing => String::new(),
        };
        (view, secret)
    }

    pub fn new_client(
        &self,
        role: &str,
        configure: impl FnOnce(&mut NewClient),
    ) -> (ClientView, String) {
        let mut request = NewClient {
            name: format!("{role} client"),
            role: role.into(),
            ..NewClient::default()
        };
        configure(&mut request);
        self.create_client(request)
    }

    pub fn set_status(&self, client_id: &str, change: clients::StatusChange) {
        let actor = self.root_actor();
        self.db
            .run_here(|conn| clients::change_status(conn, &actor, client_id, change))
            .unwrap();
    }

    pub fn create_tenant(&self, name: &str, parent: Option<&str>) -> String {
        let actor = self.root_actor();
        self.db
            .run_here(|conn| tenants::create(conn, &actor, name, parent, &[]))
            .unwrap()
            .id
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.settings.keys_dir.clone()
    }
}

pub fn with_alg(alg: SigningAlg) -> impl FnOnce(&mut Settings) {
    move |s| s.signing_alg = alg
}

/// Verifies a JWT offline against the app's published JWKS, as a resource
/// server would.
pub fn verify_with_jwks(app: &TestApp, token: &str) -> serde_json::Value {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&app.get("/.well-known/jwks.json", Auth::None).body).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    validation.set_issuer(&[app.address.as_str()]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .expect("signature verifies against the JWKS")
        .claims
}

/// Moves a client's `expires_at` into the past, directly in the store.
pub fn expire_client(app: &TestApp, client_id: &str) {
    use diesel::prelude::*;
    use keyward::store::schema::clients;
    let actor = app.root_actor();
    app.db
        .run_here(|conn| {
            conn.write(|tx| {
                keyward::service::audit::record(
                    tx,
                    &actor,
                    "test.client.expire",
                    Some(client_id),
                    None,
                    serde_json::json!({}),
                )?;
                diesel::update(clients::table.find(client_id))
                    .set(clients::expires_at.eq(Some(keyward::service::now() - 1)))
                    .execute(&mut **tx)?;
                // A direct write: announce it as the services do, so caches drop it.
                tx.announce(keyward::store::changes::Change::Client(
                    client_id.to_string(),
                ))?;
                Ok::<_, keyward::service::ServiceError>(())
            })
        })
        .unwrap();
}

/// Inserts a device group directly (the admin API has its own tests).
pub fn insert_device_group(app: &TestApp, tenant_id: &str, name: &str) -> String {
    use diesel::prelude::*;
    use keyward::store::models::DeviceGroup;
    use keyward::store::schema::device_groups;
    let mut conn = app.conn();
    let group = DeviceGroup {
        id: keyward::tokens::opaque::random_id("dg_"),
        tenant_id: tenant_id.into(),
        name: name.into(),
        description: None,
        created_at: keyward::service::now(),
    };
    diesel::insert_into(device_groups::table)
        .values(&group)
        .execute(&mut conn)
        .unwrap();
    group.id
}

impl TestApp {
    /// A token of a new admin client of `tenant_id`, holding `scopes` (or all
    /// admin scopes).
    pub fn tenant_admin(&self, tenant_id: &str, scopes: Option<&[&str]>) -> String {
        let (client, secret) = self.new_client("admin", |c| {
            c.tenant_id = Some(tenant_id.to_string());
            c.scopes = scopes.map(|s| s.iter().map(|x| x.to_string()).collect());
        });
        self.token_for(&client.client_id, &secret, &[])
    }
}

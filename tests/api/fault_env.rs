//! What the fault tests need around the server: a private PostgreSQL (and
//! PgBouncer) that a test may restart, drop or cut without touching the
//! machine's shared one, a TCP relay that can cut or hang, the server as a
//! subprocess (so it can be killed, signalled or run as another user), and a
//! stream of requests that records every answer.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use keyward::store::AnyConnection;

use crate::helpers::connect;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database the server uses in the private instance.
pub const APP_DB: &str = "keyward";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(what: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `runuser -u postgres -- <bin> ...`: initdb, pg_ctl and pgbouncer refuse root.
fn as_postgres(bin: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", bin]);
    command
}

fn chown_to(path: &Path, user: &str) {
    run(
        "chown",
        Command::new("chown").args(["-R", user, &path.display().to_string()]),
    );
}

/// A fresh tempdir that other users may enter (tempdirs are 0700).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A PostgreSQL instance of the test's own, on a free port, stopped
/// (`-m immediate`) on drop.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let initdb = format!("{PG_BIN}/initdb");
        assert!(
            Path::new(&initdb).exists(),
            "the fault tests need PostgreSQL 15's initdb at {initdb} (apt-get install postgresql-15)"
        );
        let dir = open_tempdir();
        chown_to(dir.path(), "postgres");
        // Under a second: not worth a template shared between tests.
        run(
            "initdb",
            as_postgres(&initdb).args([
                "-D",
                &dir.path().join("data").display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]),
        );
        let pg = PrivatePostgres {
            dir,
            port: free_port(),
        };
        pg.pg_ctl(&["start", "-w", "-t", "30"]);
        pg.execute("postgres", &format!("CREATE DATABASE {APP_DB}"));
        pg
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data").display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(
            "pg_ctl",
            as_postgres(&format!("{PG_BIN}/pg_ctl"))
                .args(["-D", &data, "-l", &log, "-o", &options])
                .args(args),
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn app_url(&self) -> String {
        self.url(APP_DB)
    }

    pub fn conn(&self, database: &str) -> AnyConnection {
        connect(&self.url(database)).expect("a connection to the private PostgreSQL")
    }

    pub fn execute(&self, database: &str, sql: &str) {
        self.conn(database)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `pg_ctl restart -m fast`: every session ends, the server comes back.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "30"]);
    }

    /// Ends every session of the app's database but the caller's.
    pub fn terminate_app_sessions(&self, admin: &mut AnyConnection) {
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{APP_DB}' AND pid <> pg_backend_pid()"
            ))
            .expect("terminate sessions");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .args(["-D", &data, "stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// PgBouncer in transaction mode in front of a private PostgreSQL, stopped
/// on drop.
pub struct PgBouncer {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgBouncer {
    pub fn start(pg: &PrivatePostgres) -> PgBouncer {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the PgBouncer case needs pgbouncer (apt-get install -y pgbouncer)");
        let dir = open_tempdir();
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 {APP_DB} = host=127.0.0.1 port={pg_port} dbname={APP_DB} user=postgres\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = transaction\n\
                 max_client_conn = 500\n\
                 default_pool_size = 20\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 logfile = {log}\n\
                 pidfile = {pid}\n",
                pg_port = pg.port,
                users = path("users.txt"),
                log = path("pgbouncer.log"),
                pid = path("pgbouncer.pid"),
            ),
        )
        .unwrap();
        chown_to(dir.path(), "postgres");
        run(
            "pgbouncer",
            as_postgres(bin).args(["-d", &path("pgbouncer.ini")]),
        );
        let bouncer = PgBouncer { dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{APP_DB}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{}", pid.trim())).exists() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A tmpfs of `size_kib` mounted on a new directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_kib: u64) -> Tmpfs {
        let dir = open_tempdir();
        run(
            "mount a tmpfs (the disk-full case needs root)",
            Command::new("mount").args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0755"),
                "tmpfs",
                &dir.path().display().to_string(),
            ]),
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", &self.dir.path().display().to_string()])
            .status();
    }
}

const FORWARD: u8 = 0;
/// New connections are accepted and closed at once; existing ones are cut.
const REFUSE: u8 = 1;
/// Bytes are no longer passed either way: the database hangs.
const HANG: u8 = 2;

/// A TCP relay in front of PostgreSQL that a test can cut, hang and restore.
pub struct Relay {
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// Bumped by `cut`: streams opened before it are closed.
    cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            mode: Arc::new(AtomicU8::new(FORWARD)),
            cuts: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mode, cuts, stop) = (relay.mode.clone(), relay.cuts.clone(), relay.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if mode.load(Ordering::SeqCst) == REFUSE {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let born = cuts.load(Ordering::SeqCst);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (mode, cuts, stop) = (mode.clone(), cuts.clone(), stop.clone());
                    std::thread::spawn(move || pump(from, to, born, &mode, &cuts, &stop));
                }
            }
        });
        relay
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Every open connection is closed and new ones are dropped.
    pub fn cut(&self) {
        self.mode.store(REFUSE, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Nothing passes any more, and nothing is closed either.
    pub fn hang(&self) {
        self.mode.store(HANG, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.mode.store(FORWARD, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    born: u64,
    mode: &AtomicU8,
    cuts: &AtomicU64,
    stop: &AtomicBool,
) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if cuts.load(Ordering::SeqCst) != born || stop.load(Ordering::SeqCst) {
            break;
        }
        if mode.load(Ordering::SeqCst) == HANG {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// `keyward serve` as a subprocess, killed on drop.
pub struct ServerProcess {
    child: Child,
    pub address: String,
    pub admin_id: String,
    pub admin_secret: String,
    pub log: PathBuf,
    pub exited: Option<ExitStatus>,
}

pub struct ServerOptions {
    pub database_url: String,
    /// Holds data/ and keys/; reused across restarts of one store.
    pub home: PathBuf,
    pub env: Vec<(String, String)>,
    /// Run as `nobody` (root ignores file modes).
    pub as_nobody: bool,
}

impl ServerOptions {
    pub fn new(database_url: String, home: &Path) -> ServerOptions {
        ServerOptions {
            database_url,
            home: home.to_path_buf(),
            env: Vec::new(),
            as_nobody: false,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> ServerOptions {
        self.env.push((name.into(), value.into()));
        self
    }
}

static SPAWNED: AtomicU64 = AtomicU64::new(0);

impl ServerProcess {
    pub fn spawn(options: &ServerOptions) -> ServerProcess {
        let port = free_port();
        let n = SPAWNED.fetch_add(1, Ordering::SeqCst);
        let log = options.home.join(format!("server-{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = crate::helpers::keyward_command();
        command.arg("serve");
        command
            .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
            .env("KEYWARD_DATABASE_URL", &options.database_url)
            .env("KEYWARD_DATA_DIR", options.home.join("data"))
            .env("KEYWARD_KEYS_DIR", options.home.join("keys"))
            .env("KEYWARD_DB_POOL_SIZE", "4")
            .env("KEYWARD_WORKERS", "2")
            .env("RUST_LOG", "info")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        if options.as_nobody {
            use std::os::unix::process::CommandExt;
            command.uid(65534).gid(65534);
        }
        let child = command.spawn().expect("spawn keyward serve");
        let mut server = ServerProcess {
            child,
            address: format!("http://127.0.0.1:{port}"),
            admin_id: String::new(),
            admin_secret: String::new(),
            log,
            exited: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("keyward serve exited ({status}):\n{}", server.log_text());
            }
            if get(&server.address, "/healthz").status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "keyward serve did not start:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let bootstrap: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(options.home.join("data/bootstrap-admin.json"))
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        server.admin_id = bootstrap["client_id"].as_str().unwrap_or_default().into();
        server.admin_secret = bootstrap["client_secret"]
            .as_str()
            .unwrap_or_default()
            .into();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        run(
            "kill",
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]),
        );
    }

    /// Waits for the process to end, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn token(&self, id: &str, secret: &str) -> Answer {
        token(&self.address, id, secret)
    }

    pub fn admin_token(&self) -> String {
        let answer = self.token(&self.admin_id, &self.admin_secret);
        assert_eq!(answer.status, 200, "admin token: {}", answer.body);
        answer.json()["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failed fault test shows what the server logged (the causes of
        // its 500s and 503s), not just what it answered.
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "--- the server's log (last 80 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// One HTTP answer (status 0: no answer at all, with the reason in `body`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Answer {
                status: 0,
                retry_after: None,
                body: e.to_string(),
            }
        }
    };
    Answer {
        status: response.status(),
        retry_after: response.header("Retry-After").map(str::to_string),
        body: response.into_string().unwrap_or_default(),
    }
}

pub fn get(address: &str, path: &str) -> Answer {
    answer(agent().get(&format!("{address}{path}")).call())
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn token(address: &str, id: &str, secret: &str) -> Answer {
    answer(
        agent()
            .post(&format!("{address}/oauth/token"))
            .set("Authorization", &basic(id, secret))
            .send_form(&[("grant_type", "client_credentials")]),
    )
}

pub fn form(address: &str, path: &str, auth: &str, fields: &[(&str, &str)]) -> Answer {
    answer(
        agent()
            .post(&format!("{address}{path}"))
            .set("Authorization", auth)
            .send_form(fields),
    )
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn basic_auth(id: &str, secret: &str) -> String {
    basic(id, secret)
}

pub fn admin(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let request = agent()
        .request(method, &format!("{address}{path}"))
        .set("Authorization", &bearer(token));
    answer(match body {
        Some(json) => request.send_json(json),
        None => request.call(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Token,
    AdminList,
    AdminCreate,
}

#[derive(Debug, Clone)]
pub struct Observation {
    pub kind: Kind,
    pub started: Instant,
    pub finished: Instant,
    pub answer: Answer,
    /// For creates: the name sent, and the id when it was created.
    pub name: Option<String>,
    pub client_id: Option<String>,
}

/// A stream of requests (token by Basic, admin list, admin create), one
/// thread each, until stopped; bounded by count as well.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Observation>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

pub struct Credentials {
    pub address: String,
    pub client_id: String,
    pub client_secret: String,
    pub admin_token: String,
    /// Names of created clients start with it (unique per test).
    pub prefix: String,
}

const MAX_REQUESTS_PER_KIND: usize = 3_000;
/// Numbers the names of created clients, unique across streams.
static CREATED: AtomicU64 = AtomicU64::new(0);

impl Traffic {
    pub fn start(credentials: &Credentials) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let creds = Arc::new(Credentials {
            address: credentials.address.clone(),
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.clone(),
            admin_token: credentials.admin_token.clone(),
            prefix: credentials.prefix.clone(),
        });
        let threads = [Kind::Token, Kind::AdminList, Kind::AdminCreate]
            .into_iter()
            .map(|kind| {
                let (stop, seen, c) = (stop.clone(), seen.clone(), creds.clone());
                std::thread::spawn(move || {
                    for _ in 0..MAX_REQUESTS_PER_KIND {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let started = Instant::now();
                        let mut name = None;
                        let answer = match kind {
                            Kind::Token => token(&c.address, &c.client_id, &c.client_secret),
                            Kind::AdminList => admin(
                                &c.address,
                                "GET",
                                "/admin/v1/clients?limit=5",
                                &c.admin_token,
                                None,
                            ),
                            Kind::AdminCreate => {
                                let n = format!(
                                    "{}-{}",
                                    c.prefix,
                                    CREATED.fetch_add(1, Ordering::SeqCst)
                                );
                                name = Some(n.clone());
                                admin(
                                    &c.address,
                                    "POST",
                                    "/admin/v1/clients",
                                    &c.admin_token,
                                    Some(serde_json::json!({"name": n, "role": "reader"})),
                                )
                            }
                        };
                        let client_id = (answer.status == 201)
                            .then(|| answer.json()["client_id"].as_str().map(str::to_string))
                            .flatten();
                        seen.lock().unwrap().push(Observation {
                            kind,
                            started,
                            finished: Instant::now(),
                            answer,
                            name,
                            client_id,
                        });
                        // Enough load to meet the fault, not enough to
                        // starve the two cores the suite shares.
                        let pause = if kind == Kind::AdminCreate { 60 } else { 20 };
                        std::thread::sleep(Duration::from_millis(pause));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            seen,
            threads,
        }
    }

    /// Waits until every kind of request has succeeded after `since` (at
    /// most `limit`), and returns how long the slowest kind took.
    pub fn wait_healed(&self, since: Instant, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(heal) = heal_time(&self.seen.lock().unwrap(), since) {
                return Some(heal);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(self) -> Vec<Observation> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("traffic thread");
        }
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|arc| arc.lock().unwrap().clone())
    }
}

/// For each kind, the first success of a request sent at or after `since`;
/// the time to the latest of them (None while some kind has none).
pub fn heal_time(seen: &[Observation], since: Instant) -> Option<Duration> {
    let mut worst = Duration::ZERO;
    for kind in [Kind::Token, Kind::AdminList, Kind::AdminCreate] {
        let first = seen
            .iter()
            .filter(|o| o.kind == kind && o.started >= since)
            .find(|o| matches!(o.answer.status, 200 | 201))?;
        worst = worst.max(first.finished.duration_since(since));
    }
    Some(worst)
}

/// The rule for every answer during a fault: 200/201 or 503
/// `temporarily_unavailable` with Retry-After; never 500, 401 or 403.
/// Returns how many 503s there were.
pub fn assert_only_success_or_503(case: &str, seen: &[Observation]) -> usize {
    let mut unavailable = 0;
    for o in seen {
        match o.answer.status {
            200 | 201 => {}
            503 => {
                unavailable += 1;
                assert!(
                    o.answer.retry_after.is_some(),
                    "{case}: a 503 without Retry-After ({:?}): {}",
                    o.kind,
                    o.answer.body
                );
                assert_eq!(
                    o.answer.json()["error"],
                    "temporarily_unavailable",
                    "{case}: {:?} {}",
                    o.kind,
                    o.answer.body
                );
            }
            other => panic!(
                "{case}: {:?} answered {other} during the fault: {}",
                o.kind, o.answer.body
            ),
        }
    }
    unavailable
}

/// Every create that answered 201 exists once, with its `client.create`
/// audit entry; none that answered otherwise exists.
pub fn assert_creates_match_the_store(case: &str, conn: &mut AnyConnection, seen: &[Observation]) {
    use diesel::prelude::*;
    use keyward::store::schema::{audit_events, clients};
    for o in seen.iter().filter(|o| o.kind == Kind::AdminCreate) {
        let name = o.name.as_deref().unwrap();
        let ids: Vec<String> = clients::table
            .filter(clients::name.eq(name))
            .select(clients::client_id)
            .load(conn)
            .unwrap();
        if o.answer.status == 201 {
            assert_eq!(
                ids,
                vec![o.client_id.clone().unwrap()],
                "{case}: client {name} answered 201 and must exist once"
            );
            let audited: i64 = audit_events::table
                .filter(audit_events::action.eq("client.create"))
                .filter(audit_events::target.eq(&ids[0]))
                .count()
                .get_result(conn)
                .unwrap();
            assert_eq!(audited, 1, "{case}: client.create audit of {name}");
        } else {
            assert!(
                ids.is_empty(),
                "{case}: client {name} answered {} yet exists",
                o.answer.status
            );
        }
    }
}

pub fn summary(seen: &[Observation]) -> String {
    let count = |f: &dyn Fn(&Observation) -> bool| seen.iter().filter(|o| f(o)).count();
    format!(
        "{} requests: {} ok, {} 503",
        seen.len(),
        count(&|o| matches!(o.answer.status, 200 | 201)),
        count(&|o| o.answer.status == 503)
    )
}

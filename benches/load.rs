//! Load generator for a running keyward server.
//!
//! `cargo bench --bench load -- --help` lists the options. It drives the
//! server over HTTP with `--connections` keep-alive connections (one thread
//! and one lean keep-alive HTTP/1.1 connection each) for `--duration`
//! seconds per scenario, after `--warmup` seconds whose results are thrown
//! away, and prints for each scenario the request rate, p50, p99 and p99.9
//! latency, the error count and the server's database round trips per
//! request: the growth of its /metrics counter `keyward_db_queries_total`
//! (SQL statements, each a round trip) over the requests.
//!
//! Two ways to send. Closed loop (the default): each connection sends as
//! soon as its previous answer is in, which finds the most the server can
//! do but understates latency under saturation, since a request held up
//! behind a slow one is never counted as waiting (coordinated omission).
//! Open loop (`--rate N`): N requests/s in all on a fixed schedule, latency
//! measured from each request's intended send time, so queueing counts.
//!
//! The clients it draws from are registered through the service layer
//! (`clients::register`, as the CLI does) in the store named by the same
//! settings as the server's (`KEYWARD_DATABASE_URL`, `KEYWARD_DATA_DIR`), in
//! batches, with the name prefix `bench-`; or, for a million, in bulk
//! (`--seed bulk`), and kept for later runs (`--credentials`). This is a
//! benchmark that prints figures, not a test: it asserts nothing about speed.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use keyward::service::clients::{self, IssuedCredential, NewClient, StatusChange};
use keyward::service::scopes::ScopeSet;
use keyward::service::{now, tenants, Actor, ServiceError};
use keyward::store::{AnyConnection, Backend, Conn, Db};
use serde_json::{json, Value};

/// Bench clients registered per write transaction.
const BATCH: usize = 1_000;
/// Bench clients inserted per write transaction by `--seed bulk`, and rows
/// per INSERT statement (28 columns a client: PostgreSQL takes at most
/// 65,535 parameters a statement).
const BULK_BATCH: usize = 10_000;
const BULK_ROWS_PER_STATEMENT: usize = 2_000;
/// Seeding prints its progress every so many clients.
const SEED_REPORT_EVERY: usize = 10_000;
/// Most access tokens minted for `introspect_distinct`.
const DISTINCT_TOKENS_MAX: usize = 10_000;
/// Time spent minting them, at most.
const DISTINCT_MINT_TIME: Duration = Duration::from_secs(5);
/// Assertions signed ahead for `token_private_key_jwt`, at most, and the
/// time spent signing them (15 minutes of validity each).
const PRESIGNED_MAX: usize = 600_000;
const PRESIGN_TIME: Duration = Duration::from_secs(12);
/// How long `propagation` waits for one change before counting an error.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two introspections while waiting for a change.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Parser, Debug)]
#[command(
    name = "load",
    bin_name = "cargo bench --bench load --",
    about = "Load generator for a running keyward server: requests/s, p50/p99 latency, \
             errors and database round trips per request, per scenario",
    after_help = "Scenarios:\n  \
        healthz              GET /healthz (the HTTP stack alone)\n  \
        token_basic          POST /oauth/token, client_secret_basic, a random bench client each time\n  \
        token_post           POST /oauth/token, client_secret_post, a random bench client each time\n  \
        token_private_key_jwt POST /oauth/token, private_key_jwt (EdDSA), a fresh jti each time\n  \
        introspect_same      POST /oauth/introspect of one access token, as the bootstrap admin\n  \
        introspect_distinct  POST /oauth/introspect over up to 10,000 distinct access tokens\n  \
        renew                GET /api/v1/token/renew with the access token as bearer\n  \
        propagation          how long until a disabled client's token is inactive at --url2\n\n\
        Closed loop by default (each connection sends when its previous answer is in: \
        maximum throughput); with --rate, open loop at that many requests/s, latency from \
        each request's intended send time so that queueing counts, and 'unsent' the \
        requests due that a connection never got to send. \
        Bench clients are registered through the service layer (as the CLI registers them; \
        with --seed bulk one is, the rest are copies of its row) \
        in the store named by the settings below \
        (the same KEYWARD_* variables as the server's) with names starting bench-; \
        bootstrap-admin.json in the data directory supplies the admin that introspects. \
        db/req is the growth of the server's keyward_db_queries_total (SQL statements) \
        divided by the requests; it counts --url only. \
        Of the server settings only --database-url and --data-dir are used here; \
        the others are accepted, so that the server's environment can be shared, and ignored."
)]
struct Args {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,

    /// Second server on the same store, polled by `propagation`. Default: --url.
    #[arg(long)]
    url2: Option<String>,

    /// Concurrent keep-alive connections: one thread with its own HTTP agent each.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,

    /// Open loop: send this many requests/s in all, spread evenly over the
    /// connections, each at its intended time, and measure latency from that
    /// time, so that queueing counts (no coordinated omission). Without it,
    /// closed loop: each connection sends as soon as its previous answer is in.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,

    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Seconds of load before each scenario's measurement; their results are discarded.
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// client_credentials clients to create; token requests draw one at random each time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    clients: u64,

    /// How bench clients are made: `register`, each through the service
    /// layer as the CLI makes them; `bulk`, one made so, the rest copies of
    /// its row (new id, name and secret) inserted many to a statement,
    /// without the audit event and change notice of each.
    #[arg(long, value_enum, default_value_t = Seed::Register)]
    seed: Seed,

    /// A file of bench client ids and secrets (`id secret` a line). If it
    /// exists, its first --clients clients are used and none is made;
    /// otherwise the clients made are written to it, for a later run.
    #[arg(long)]
    credentials: Option<std::path::PathBuf>,

    /// Make (or read) the bench clients and stop: no warm-up, no scenario.
    #[arg(long)]
    seed_only: bool,

    /// Comma-separated scenarios to run, in the order given. Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Option<Vec<Scenario>>,

    /// Also print, to stderr, one `TIMELINE` line per second of each
    /// measured window (by intended send time in open loop): its requests,
    /// p99 and max, and the wall-clock second it began, so that a stall can
    /// be matched with what the server or the machine did then.
    #[arg(long)]
    timeline: bool,

    /// The pid of a background process (say, `keyward purge`) to alternate
    /// through each measured window: paused (SIGSTOP) for
    /// --alternate-every seconds, then resumed (SIGCONT) for as long, and so
    /// on; resumed at the end. Prints an `ALTERNATE` line and adds
    /// `alternate` to the RESULT: p50, p99 and p99.9 pooled over every
    /// request sent (intended, in open loop) while it was paused, and over
    /// every one sent while it ran. Both sides share one server, store and
    /// stretch of the machine's time, which separate windows do not.
    #[arg(long)]
    alternate: Option<u32>,

    /// Seconds per side of --alternate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    alternate_every: u64,

    /// Requests intended within this many milliseconds after a switch count
    /// for neither side: a batch the process began just before it was
    /// paused still finishes in the store.
    #[arg(long, default_value_t = 500)]
    alternate_guard_ms: u64,

    /// Changes measured by `propagation`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    propagation_rounds: u32,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,

    #[command(flatten)]
    settings: keyward::Settings,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
enum Seed {
    Register,
    Bulk,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
enum Scenario {
    Healthz,
    TokenBasic,
    TokenPost,
    TokenPrivateKeyJwt,
    IntrospectSame,
    IntrospectDistinct,
    Renew,
    Propagation,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::Healthz,
        Scenario::TokenBasic,
        Scenario::TokenPost,
        Scenario::TokenPrivateKeyJwt,
        Scenario::IntrospectSame,
        Scenario::IntrospectDistinct,
        Scenario::Renew,
        Scenario::Propagation,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::TokenBasic => "token_basic",
            Scenario::TokenPost => "token_post",
            Scenario::TokenPrivateKeyJwt => "token_private_key_jwt",
            Scenario::IntrospectSame => "introspect_same",
            Scenario::IntrospectDistinct => "introspect_distinct",
            Scenario::Renew => "renew",
            Scenario::Propagation => "propagation",
        }
    }

    fn needs_bench_clients(self) -> bool {
        !matches!(self, Scenario::Healthz | Scenario::Propagation)
    }

    fn needs_admin(self) -> bool {
        matches!(
            self,
            Scenario::IntrospectSame | Scenario::IntrospectDistinct | Scenario::Propagation
        )
    }
}

/// The bootstrap admin, as written to `<data dir>/bootstrap-admin.json`.
struct Admin {
    client_id: String,
    client_secret: String,
}

impl Admin {
    fn load(data_dir: &Path) -> Result<Admin, String> {
        let path = data_dir.join(keyward::service::bootstrap::BOOTSTRAP_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {}: {e} (give the server's data directory with --data-dir or KEYWARD_DATA_DIR)",
                path.display()
            )
        })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{} has no {name:?}", path.display()))
        };
        Ok(Admin {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
        })
    }

    fn basic(&self) -> String {
        basic_auth(&self.client_id, &self.client_secret)
    }
}

/// A bench client's credentials, kept in memory for the run.
struct Credentials {
    client_id: String,
    secret: String,
}

fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// splitmix64: enough randomness to pick clients, and no dependency.
struct Rng(u64);

impl Rng {
    fn seeded(stream: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(nanos ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn agent() -> Http {
    Http::default()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A lean HTTP/1.1 keep-alive client for the load loops: one TCP connection,
/// requests written in one go, responses framed by Content-Length, chunked
/// transfer coding or the connection's end (RFC 9112 6.3). A general
/// client's per-request work (URL parsing, header maps, redirects) would eat
/// a share of the two cores the server is measured on. It talks only to a
/// keyward server over plain `http://`.
#[derive(Default)]
struct Http {
    conn: RefCell<Option<(String, BufReader<TcpStream>)>>,
}

impl Http {
    /// Status and body of a response, whatever the status; Err for transport
    /// failures. A stale keep-alive connection is replaced once.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String), String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut request = String::with_capacity(256 + body.len());
        let _ = write!(request, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            let _ = write!(request, "{name}: {value}\r\n");
        }
        let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
        let mut last_error = String::new();
        for _attempt in 0..2 {
            let mut slot = self.conn.borrow_mut();
            if slot.as_ref().is_none_or(|(h, _)| h != host) {
                let stream =
                    TcpStream::connect(host).map_err(|e| format!("transport: {host}: {e}"))?;
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                *slot = Some((
                    host.to_string(),
                    BufReader::with_capacity(16 * 1024, stream),
                ));
            }
            let Some((_, reader)) = slot.as_mut() else {
                return Err("transport: no connection".into());
            };
            match exchange(reader, request.as_bytes(), method == "HEAD") {
                Ok((status, body, keep_alive)) => {
                    if !keep_alive {
                        *slot = None;
                    }
                    return Ok((status, body));
                }
                Err(e) => {
                    *slot = None;
                    last_error = e;
                }
            }
        }
        Err(format!("transport: {last_error}"))
    }
}

/// How a response's body ends (RFC 9112 6.3).
enum BodyLength {
    Exactly(usize),
    Chunked,
    /// Neither header: the body runs until the server closes the connection.
    UntilClose,
}

/// Writes one request and reads its response: (status, body, keep-alive).
fn exchange(
    reader: &mut BufReader<TcpStream>,
    request: &[u8],
    head: bool,
) -> Result<(u16, String, bool), String> {
    reader
        .get_mut()
        .write_all(request)
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Err("connection closed".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = !line.starts_with("HTTP/1.0");
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed in the headers".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // chunked is always the last coding (RFC 9112 6.1); the
                // server compresses nothing, so it is the only one.
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // No body after HEAD, 1xx, 204 or 304 whatever the headers say (RFC 9112 6.3).
    let framing = if head || status < 200 || status == 204 || status == 304 {
        BodyLength::Exactly(0)
    } else if chunked {
        // Transfer-Encoding wins over Content-Length (RFC 9112 6.3, rule 3).
        BodyLength::Chunked
    } else {
        match length {
            Some(n) => BodyLength::Exactly(n),
            None => BodyLength::UntilClose,
        }
    };
    let body = match framing {
        BodyLength::Exactly(n) => {
            let mut body = vec![0u8; n];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body
        }
        BodyLength::Chunked => read_chunked(reader, &mut line)?,
        BodyLength::UntilClose => {
            keep_alive = false;
            let mut body = Vec::new();
            reader.read_to_end(&mut body).map_err(|e| e.to_string())?;
            body
        }
    };
    Ok((
        status,
        String::from_utf8_lossy(&body).into_owned(),
        keep_alive,
    ))
}

/// A chunked body (RFC 9112 7.1): size lines in hex, extensions and
/// trailers read and dropped.
fn read_chunked(reader: &mut BufReader<TcpStream>, line: &mut String) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        line.clear();
        if reader.read_line(line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed in a chunked body".into());
        }
        let size_text = line.trim_end().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
        if crlf != *b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
    }
    // Trailer fields, up to the empty line.
    loop {
        line.clear();
        if reader.read_line(line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed in the trailers".into());
        }
        if line.trim_end().is_empty() {
            return Ok(body);
        }
    }
}

/// Ok when the status is `expected`; else an error naming status and body.
fn expect_status(result: Result<(u16, String), String>, expected: u16) -> Result<String, String> {
    let (status, body) = result?;
    if status == expected {
        Ok(body)
    } else {
        Err(format!("HTTP {status}: {}", snippet(&body)))
    }
}

fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

fn request_token_basic(agent: &Http, url: &str, client: &Credentials) -> Result<String, String> {
    expect_status(
        agent.send(
            "POST",
            &format!("{url}/oauth/token"),
            &[
                (
                    "Authorization",
                    &basic_auth(&client.client_id, &client.secret),
                ),
                ("Content-Type", FORM),
            ],
            "grant_type=client_credentials",
        ),
        200,
    )
}

fn request_token_post(agent: &Http, url: &str, client: &Credentials) -> Result<String, String> {
    expect_status(
        agent.send(
            "POST",
            &format!("{url}/oauth/token"),
            &[("Content-Type", FORM)],
            &format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                client.client_id, client.secret
            ),
        ),
        200,
    )
}

/// An access token for `client`, read from the token endpoint's JSON.
fn mint_token(agent: &Http, url: &str, client: &Credentials) -> Result<String, String> {
    let body = request_token_basic(agent, url, client)?;
    access_token_of(&body)
}

fn access_token_of(body: &str) -> Result<String, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("response is not JSON: {e}"))?;
    value["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no access_token in {}", snippet(body)))
}

/// Introspection's `active`, as the admin (whose Basic header is `admin_basic`).
fn introspect(agent: &Http, url: &str, admin_basic: &str, token: &str) -> Result<bool, String> {
    let body = expect_status(
        agent.send(
            "POST",
            &format!("{url}/oauth/introspect"),
            &[("Authorization", admin_basic), ("Content-Type", FORM)],
            &format!("token={token}"),
        ),
        200,
    )?;
    // The server writes compact JSON; avoid parsing it on the hot path.
    if body.contains("\"active\":true") {
        Ok(true)
    } else if body.contains("\"active\":false") {
        Ok(false)
    } else {
        Err(format!("no \"active\" in {}", snippet(&body)))
    }
}

/// The server's `keyward_db_queries_total`.
fn db_operations(agent: &Http, url: &str) -> Result<u64, String> {
    let body = expect_status(agent.send("GET", &format!("{url}/metrics"), &[], ""), 200)?;
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some("keyward_db_queries_total"))
                .then(|| parts.next())
                .flatten()
        })
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| "no keyward_db_queries_total in /metrics".to_string())
}

/// What one scenario's load produced.
struct LoadResult {
    /// Answered requests (errors included).
    requests: usize,
    errors: usize,
    /// Open loop: requests due before the end that were never sent, because
    /// the connection was still waiting for earlier answers.
    unsent: usize,
    elapsed: Duration,
    /// Sorted, microseconds. Open loop: from each request's intended send
    /// time, unsent requests included with the time they had waited by the end.
    latencies: Vec<u32>,
    db_ops: Option<u64>,
    first_error: Option<String>,
    /// With --timeline: per second of the window, its latencies, sorted.
    seconds: Vec<Vec<u32>>,
    /// When the measured window began.
    started_at: std::time::SystemTime,
    /// With --alternate: the latencies by side.
    sides: Option<Sides>,
}

/// Set from --timeline before any load runs.
static TIMELINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set from --alternate before any load runs.
static ALTERNATE: std::sync::OnceLock<Alternate> = std::sync::OnceLock::new();

/// --alternate: which process, how long a side, how long a guard.
#[derive(Debug, Clone, Copy)]
struct Alternate {
    pid: u32,
    every: Duration,
    guard: Duration,
}

impl Alternate {
    /// Pauses the process at once, then switches it every `self.every`
    /// until `until`, and resumes it. Returns each switch, as time since
    /// `epoch` and whether the process ran from then on.
    fn run(self, epoch: Instant, until: Instant) -> Result<Vec<(Duration, bool)>, String> {
        let mut switches = Vec::new();
        let mut running = false;
        loop {
            self.signal(if running { "-CONT" } else { "-STOP" })?;
            switches.push((epoch.elapsed(), running));
            let next = Instant::now() + self.every;
            if next >= until {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                self.signal("-CONT")?;
                return Ok(switches);
            }
            std::thread::sleep(self.every);
            running = !running;
        }
    }

    fn signal(self, which: &str) -> Result<(), String> {
        let status = std::process::Command::new("kill")
            .args([which, &self.pid.to_string()])
            .status()
            .map_err(|e| format!("kill {which} {}: {e}", self.pid))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {which} {}: {status}", self.pid))
        }
    }

    /// Splits timed requests (time since the epoch, latency) by the side
    /// in force when each was sent; the guard after each switch and the
    /// time before the first go to neither. Both sides sorted.
    fn split(self, switches: &[(Duration, bool)], timed: &[(u32, u32)]) -> Sides {
        let mut sides = Sides::default();
        let guard = self.guard.as_micros() as u64;
        let at: Vec<u64> = switches.iter().map(|(t, _)| t.as_micros() as u64).collect();
        for &(sent_ms, latency) in timed {
            let sent = u64::from(sent_ms) * 1000;
            let Some(i) = at.partition_point(|&t| t <= sent).checked_sub(1) else {
                continue;
            };
            if sent - at[i] < guard {
                continue;
            }
            if switches[i].1 {
                sides.running.push(latency);
            } else {
                sides.paused.push(latency);
            }
        }
        sides.paused.sort_unstable();
        sides.running.sort_unstable();
        sides.switches = switches.len();
        sides
    }
}

/// --alternate's result: latencies, sorted, by side.
#[derive(Debug, Default)]
struct Sides {
    paused: Vec<u32>,
    running: Vec<u32>,
    switches: usize,
}

impl Sides {
    fn json(&self) -> Value {
        let side = |l: &[u32]| {
            json!({
                "requests": l.len(),
                "p50_ms": micros_to_ms(percentile(l, 0.50)),
                "p99_ms": micros_to_ms(percentile(l, 0.99)),
                "p999_ms": micros_to_ms(percentile(l, 0.999)),
                "max_ms": micros_to_ms(l.last().copied()),
            })
        };
        let change = match (
            percentile(&self.paused, 0.99),
            percentile(&self.running, 0.99),
        ) {
            (Some(p), Some(r)) if p > 0 => {
                Some(round((f64::from(r) / f64::from(p) - 1.0) * 100.0, 1))
            }
            _ => None,
        };
        json!({
            "switches": self.switches,
            "paused": side(&self.paused),
            "running": side(&self.running),
            "p99_change_pct": change,
        })
    }
}

#[derive(Default)]
struct ThreadResult {
    latencies: Vec<u32>,
    /// With --timeline or --alternate: (milliseconds from the run's epoch
    /// to the request's (intended) send time, latency) of each request.
    timed: Vec<(u32, u32)>,
    requests: usize,
    errors: usize,
    unsent: usize,
    first_error: Option<String>,
}

/// How the connections send.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each connection sends its next request as soon as the previous answer
    /// is in: the most the server can do, but a slow answer delays the
    /// requests behind it, whose wait no latency then shows (coordinated
    /// omission).
    Closed,
    /// This many requests/s over all connections, each request at its own
    /// intended send time; latency runs from that time, so a request that
    /// waited for an earlier one counts its wait.
    Open(f64),
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs `op` on one connection for `length`, closed or open loop. In open
/// loop, connection `index` of `connections` sends every `connections / rate`
/// seconds, offset by `index / rate` so that the connections interleave.
/// Send times are kept (with --timeline or --alternate) as time since
/// `epoch`, which all connections share.
#[allow(clippy::too_many_arguments)]
fn drive<S, F>(
    agent: &Http,
    state: &mut S,
    op: &F,
    pace: Pace,
    (index, connections): (usize, usize),
    epoch: Instant,
    length: Duration,
) -> ThreadResult
where
    F: Fn(&Http, &mut S) -> Result<(), String>,
{
    let mut result = ThreadResult {
        latencies: Vec::with_capacity(4096),
        ..ThreadResult::default()
    };
    let start = Instant::now();
    let until = start + length;
    let timed = TIMELINE.load(Ordering::Relaxed) || ALTERNATE.get().is_some();
    let keep_time = |result: &mut ThreadResult, sent: Instant, latency: Duration| {
        if timed {
            let ms = u32::try_from(sent.saturating_duration_since(epoch).as_millis())
                .unwrap_or(u32::MAX);
            result.timed.push((ms, micros(latency)));
        }
    };
    let record =
        |result: &mut ThreadResult, outcome: Result<(), String>, sent: Instant, latency| {
            result.requests += 1;
            result.latencies.push(micros(latency));
            keep_time(result, sent, latency);
            if let Err(e) = outcome {
                result.errors += 1;
                result.first_error.get_or_insert(e);
            }
        };
    match pace {
        Pace::Closed => loop {
            let sent = Instant::now();
            if sent >= until {
                break;
            }
            let outcome = op(agent, state);
            record(&mut result, outcome, sent, sent.elapsed());
        },
        Pace::Open(rate) => {
            let interval = Duration::from_secs_f64(connections as f64 / rate);
            let mut intended = start + Duration::from_secs_f64(index as f64 / rate);
            while intended < until {
                let now = Instant::now();
                if now >= until {
                    // Still behind at the end: what was due and never sent
                    // counts, with the wait so far as a lower bound; dropping
                    // it would hide the worst latencies again.
                    while intended < until {
                        result.unsent += 1;
                        result.latencies.push(micros(now - intended));
                        keep_time(&mut result, intended, now - intended);
                        intended += interval;
                    }
                    break;
                }
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let outcome = op(agent, state);
                record(&mut result, outcome, intended, intended.elapsed());
                intended += interval;
            }
        }
    }
    result
}

/// Runs `op` on `connections` threads, paced by `pace`: `warmup` of it
/// discarded, then `duration` measured, the connections staying open
/// between the two (an open loop's schedule starts afresh for the
/// measurement). `init` makes each thread's state (given the thread's
/// index), before any timing starts.
#[allow(clippy::too_many_arguments)]
fn run_load<S, I, F>(
    url: &str,
    connections: usize,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    init: I,
    op: F,
) -> LoadResult
where
    I: Fn(usize, &Http) -> S + Sync,
    F: Fn(&Http, &mut S) -> Result<(), String> + Sync,
{
    let ready = Barrier::new(connections + 1);
    let warm = Barrier::new(connections + 1);
    let go = Barrier::new(connections + 1);
    let control = agent();
    let epoch = Instant::now();
    let (results, db_ops, elapsed, started_at, start, switches) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|index| {
                let (init, op) = (&init, &op);
                let (ready, warm, go) = (&ready, &warm, &go);
                scope.spawn(move || {
                    let agent = agent();
                    let mut state = init(index, &agent);
                    let slot = (index, connections);
                    ready.wait();
                    drive(&agent, &mut state, op, pace, slot, epoch, warmup);
                    warm.wait();
                    go.wait();
                    drive(&agent, &mut state, op, pace, slot, epoch, duration)
                })
            })
            .collect();
        ready.wait();
        warm.wait();
        let before = db_operations(&control, url);
        go.wait();
        let start = Instant::now();
        let started_at = std::time::SystemTime::now();
        let alternation = ALTERNATE
            .get()
            .map(|alternate| scope.spawn(move || alternate.run(epoch, start + duration)));
        let results: Vec<ThreadResult> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| ThreadResult {
                    errors: 1,
                    first_error: Some("load thread panicked".into()),
                    ..ThreadResult::default()
                })
            })
            .collect();
        let elapsed = start.elapsed();
        let switches = alternation.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("the alternating thread panicked".into()))
        });
        let after = db_operations(&control, url);
        let db_ops = match (before, after) {
            (Ok(b), Ok(a)) => Some(a.saturating_sub(b)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("  warning: {e}");
                None
            }
        };
        (results, db_ops, elapsed, started_at, start, switches)
    });
    let mut latencies: Vec<u32> =
        Vec::with_capacity(results.iter().map(|r| r.latencies.len()).sum());
    let (mut requests, mut errors, mut unsent) = (0, 0, 0);
    let mut first_error = None;
    let mut seconds: Vec<Vec<u32>> = Vec::new();
    let mut timed = Vec::new();
    // The measured window's start, in the units of `timed`.
    let window_ms = start.duration_since(epoch).as_millis() as u32;
    let timeline = TIMELINE.load(Ordering::Relaxed);
    for r in results {
        latencies.extend_from_slice(&r.latencies);
        if switches.is_some() {
            timed.extend_from_slice(&r.timed);
        }
        for &(sent_ms, latency) in r.timed.iter().filter(|_| timeline) {
            let second = (sent_ms.saturating_sub(window_ms) / 1000) as usize;
            if seconds.len() <= second {
                seconds.resize_with(second + 1, Vec::new);
            }
            seconds[second].push(latency);
        }
        requests += r.requests;
        errors += r.errors;
        unsent += r.unsent;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    latencies.sort_unstable();
    for second in &mut seconds {
        second.sort_unstable();
    }
    let sides = match (switches, ALTERNATE.get()) {
        (Some(Ok(switches)), Some(alternate)) => Some(alternate.split(&switches, &timed)),
        (Some(Err(e)), _) => {
            errors += 1;
            first_error.get_or_insert(e);
            None
        }
        _ => None,
    };
    LoadResult {
        requests,
        errors,
        unsent,
        elapsed,
        latencies,
        db_ops,
        first_error,
        seconds,
        started_at,
        sides,
    }
}

/// With --timeline: a line per second of the window, to stderr.
fn print_timeline(scenario: Scenario, load: &LoadResult) {
    let began = load
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (second, latencies) in load.seconds.iter().enumerate() {
        eprintln!(
            "TIMELINE {}",
            json!({
                "scenario": scenario.name(),
                "second": second,
                "unix": round(began + second as f64, 1),
                "requests": latencies.len(),
                "p99_ms": micros_to_ms(percentile(latencies, 0.99)),
                "max_ms": micros_to_ms(latencies.last().copied()),
            })
        );
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn micros_to_ms(micros: Option<u32>) -> Option<f64> {
    micros.map(|m| f64::from(m) / 1000.0)
}

/// One line of the table, and its RESULT JSON.
struct Row {
    scenario: &'static str,
    rps: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    errors: usize,
    /// Open loop only.
    unsent: Option<usize>,
    db_per_req: Option<f64>,
    json: Value,
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".to_string(),
    }
}

fn table_header() -> String {
    format!(
        "{:<20} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "scenario", "req/s", "p50_ms", "p99_ms", "p99.9_ms", "errors", "unsent", "db/req"
    )
}

impl Row {
    fn from_load(scenario: Scenario, load: &LoadResult, pace: Pace, common: &Value) -> Row {
        let seconds = load.elapsed.as_secs_f64();
        let rps = (seconds > 0.0).then(|| load.requests as f64 / seconds);
        let p50_ms = micros_to_ms(percentile(&load.latencies, 0.50));
        let p99_ms = micros_to_ms(percentile(&load.latencies, 0.99));
        let p999_ms = micros_to_ms(percentile(&load.latencies, 0.999));
        let unsent = matches!(pace, Pace::Open(_)).then_some(load.unsent);
        let max_ms = micros_to_ms(load.latencies.last().copied());
        let db_per_req = match (load.db_ops, load.requests) {
            (Some(ops), n) if n > 0 => Some(ops as f64 / n as f64),
            _ => None,
        };
        let mut json = common.clone();
        json["scenario"] = scenario.name().into();
        json["requests"] = load.requests.into();
        json["seconds"] = round(seconds, 3).into();
        json["rps"] = rps.map(|v| round(v, 1)).into();
        json["p50_ms"] = p50_ms.map(|v| round(v, 2)).into();
        json["p99_ms"] = p99_ms.map(|v| round(v, 2)).into();
        json["p999_ms"] = p999_ms.map(|v| round(v, 2)).into();
        json["max_ms"] = max_ms.map(|v| round(v, 2)).into();
        json["errors"] = load.errors.into();
        json["unsent"] = unsent.into();
        json["db_ops"] = load.db_ops.into();
        json["db_per_req"] = db_per_req.map(|v| round(v, 3)).into();
        if let Some(sides) = &load.sides {
            json["alternate"] = sides.json();
        }
        Row {
            scenario: scenario.name(),
            rps,
            p50_ms,
            p99_ms,
            p999_ms,
            errors: load.errors,
            unsent,
            db_per_req,
            json,
        }
    }

    fn line(&self) -> String {
        format!(
            "{:<20} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
            self.scenario,
            fmt_opt(self.rps, 1),
            fmt_opt(self.p50_ms, 2),
            fmt_opt(self.p99_ms, 2),
            fmt_opt(self.p999_ms, 2),
            self.errors,
            self.unsent
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            fmt_opt(self.db_per_req, 3),
        )
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Everything a scenario may need.
struct Bench {
    args: Args,
    url: String,
    url2: String,
    db_url: String,
    admin: Admin,
    admin_basic: String,
    clients: Vec<Credentials>,
    db: Option<Db>,
    common: Value,
}

impl Bench {
    fn connections(&self) -> usize {
        self.args.connections as usize
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs(self.args.warmup)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.args.duration)
    }

    fn pace(&self) -> Pace {
        match self.args.rate {
            Some(rate) => Pace::Open(f64::from(rate)),
            None => Pace::Closed,
        }
    }

    fn db(&mut self) -> Result<&Db, String> {
        if self.db.is_none() {
            self.db = Some(Db::connect(&self.db_url, 4)?);
        }
        self.db.as_ref().ok_or_else(|| "no store".to_string())
    }

    fn connection(&mut self) -> Result<keyward::store::DbConnection, String> {
        let url = keyward::store::redact_url(&self.db_url);
        self.db()?
            .get()
            .map_err(|e| format!("store {url} is unreachable: {e}"))
    }

    fn load<S, I, F>(&self, scenario: Scenario, init: I, op: F) -> Row
    where
        I: Fn(usize, &Http) -> S + Sync,
        F: Fn(&Http, &mut S) -> Result<(), String> + Sync,
    {
        let load = run_load(
            &self.url,
            self.connections(),
            self.pace(),
            self.warmup(),
            self.duration(),
            init,
            op,
        );
        if let Some(e) = &load.first_error {
            eprintln!("  {}: first error: {e}", scenario.name());
        }
        if load.unsent > 0 {
            eprintln!(
                "  {}: {} requests due were never sent: the server (or this machine) \
                 cannot keep up with --rate",
                scenario.name(),
                load.unsent
            );
        }
        print_timeline(scenario, &load);
        if let Some(sides) = &load.sides {
            eprintln!(
                "ALTERNATE {}",
                json!({"scenario": scenario.name(), "sides": sides.json()})
            );
        }
        Row::from_load(scenario, &load, self.pace(), &self.common)
    }

    fn run(&mut self, scenario: Scenario) -> Result<Row, String> {
        let url = self.url.clone();
        let url = url.as_str();
        let clients = &self.clients;
        let pick = |rng: &mut Rng| &clients[rng.below(clients.len())];
        let row = match scenario {
            Scenario::Healthz => self.load(
                scenario,
                |_, _| (),
                |agent, _| {
                    expect_status(agent.send("GET", &format!("{url}/healthz"), &[], ""), 200)
                        .map(drop)
                },
            ),
            Scenario::TokenBasic => self.load(
                scenario,
                |i, _| Rng::seeded(i as u64),
                |agent, rng| request_token_basic(agent, url, pick(rng)).map(drop),
            ),
            Scenario::TokenPost => self.load(
                scenario,
                |i, _| Rng::seeded(i as u64),
                |agent, rng| request_token_post(agent, url, pick(rng)).map(drop),
            ),
            Scenario::TokenPrivateKeyJwt => {
                let assertions = self.signed_assertions()?;
                let next = AtomicUsize::new(0);
                let (assertions, next) = (&assertions, &next);
                self.load(
                    scenario,
                    |_, _| (),
                    |agent, _| {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(assertion) = assertions.get(i) else {
                            return Err("out of pre-signed assertions: lower --duration".into());
                        };
                        expect_status(
                            agent.send(
                                "POST",
                                &format!("{url}/oauth/token"),
                                &[("Content-Type", FORM)],
                                &format!(
                                    "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
                                ),
                            ),
                            200,
                        )
                        .map(drop)
                    },
                )
            }
            Scenario::IntrospectSame => {
                let token = mint_token(&agent(), url, &clients[0])
                    .map_err(|e| format!("introspect_same: no token to introspect: {e}"))?;
                let admin = self.admin_basic.as_str();
                self.load(
                    scenario,
                    |_, _| (),
                    |agent, _| match introspect(agent, url, admin, &token)? {
                        true => Ok(()),
                        false => Err("token reported inactive".to_string()),
                    },
                )
            }
            Scenario::IntrospectDistinct => {
                let tokens = self.mint_distinct()?;
                let admin = self.admin_basic.as_str();
                let tokens = &tokens;
                let connections = self.connections();
                self.load(
                    scenario,
                    |i, _| i * tokens.len() / connections,
                    |agent, next| {
                        let token = &tokens[*next % tokens.len()];
                        *next += 1;
                        match introspect(agent, url, admin, token)? {
                            true => Ok(()),
                            false => Err("token reported inactive".to_string()),
                        }
                    },
                )
            }
            Scenario::Renew => {
                // Each connection renews its own chain: every answer's token
                // is the bearer of the next request.
                let first_error = Mutex::new(None::<String>);
                let row = self.load(
                    scenario,
                    |i, agent| {
                        mint_token(agent, url, &clients[i % clients.len()]).unwrap_or_else(|e| {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                            String::new()
                        })
                    },
                    |agent, token| {
                        let body = expect_status(
                            agent.send(
                                "GET",
                                &format!("{url}/api/v1/token/renew"),
                                &[("Authorization", &format!("Bearer {token}"))],
                                "",
                            ),
                            200,
                        )?;
                        *token = access_token_of(&body)?;
                        Ok(())
                    },
                );
                if let Some(e) = first_error.into_inner().ok().flatten() {
                    eprintln!("  renew: could not mint a first token: {e}");
                }
                row
            }
            Scenario::Propagation => self.propagation()?,
        };
        Ok(row)
    }

    /// Asks one token for every bench client before anything is timed, so
    /// that the scenarios measure the steady state (each server has seen each
    /// client once) and not a cold cache: with 100,000 clients a few seconds
    /// of warmup would otherwise touch only some of them.
    fn warm_clients(&mut self) {
        let started = Instant::now();
        let next = AtomicUsize::new(0);
        let (clients, url) = (&self.clients, self.url.as_str());
        let errors: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.connections())
                .map(|_| {
                    let next = &next;
                    scope.spawn(move || {
                        let agent = agent();
                        let mut errors = 0;
                        loop {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            let Some(client) = clients.get(n) else { break };
                            if request_token_basic(&agent, url, client).is_err() {
                                errors += 1;
                            }
                        }
                        errors
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(1)).sum()
        });
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "warmed {} clients (one token each) in {took:.1} s ({errors} errors)",
            clients.len(),
        );
        self.common["clients_warmed_s"] = round(took, 3).into();
    }

    /// min(10,000, as many as ~5 s allow) access tokens, spread round-robin
    /// over the bench clients, minted on all connections at once.
    /// A private_key_jwt client (an Ed25519 key registered inline) and
    /// assertions for it, each with its own jti, signed before the
    /// measurement so that the load generator's signing does not take the
    /// server's cores: as many as `PRESIGNED_MAX` or `PRESIGN_TIME` allow.
    fn signed_assertions(&mut self) -> Result<Vec<String>, String> {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "no Ed25519 key".to_string())?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| "no Ed25519 key".to_string())?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let mut pooled = self.connection()?;
        let mut conn = Conn::detached(&mut pooled);
        let actor = bench_actor(&mut conn)?;
        let (view, _) = clients::register(
            &mut conn,
            &actor,
            NewClient {
                name: format!("bench-pkj-{}", now()),
                role: "reader".into(),
                token_endpoint_auth_method: Some("private_key_jwt".into()),
                jwks: Some(
                    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "bench", "x": x}]}),
                ),
                ..NewClient::default()
            },
        )
        .map_err(|e| format!("registering the private_key_jwt client: {e}"))?;
        let client_id = view.client_id;
        // The token endpoint's URL is always an accepted audience.
        let aud = format!("{}/oauth/token", self.url);
        let started = Instant::now();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"bench"}"#);
        let presigned: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let (pair, client_id, aud, header) = (&pair, &client_id, &aud, &header);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        let mut n = 0u64;
                        while out.len() < PRESIGNED_MAX / 2 && started.elapsed() < PRESIGN_TIME {
                            n += 1;
                            let at = now();
                            let claims = json!({"iss": client_id, "sub": client_id, "aud": aud,
                                                "iat": at, "exp": at + 900,
                                                "jti": format!("bench-{w}-{n}-{at}")});
                            let mut token = format!(
                                "{header}.{}",
                                base64::engine::general_purpose::URL_SAFE_NO_PAD
                                    .encode(claims.to_string())
                            );
                            let signature = pair.sign(token.as_bytes());
                            token.push('.');
                            token.push_str(
                                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                                    .encode(signature.as_ref()),
                            );
                            out.push(token);
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        eprintln!(
            "  token_private_key_jwt: {} assertions signed in {:.1} s",
            presigned.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(presigned)
    }

    fn mint_distinct(&self) -> Result<Vec<String>, String> {
        let started = Instant::now();
        let until = started + DISTINCT_MINT_TIME;
        let issued = AtomicUsize::new(0);
        let (clients, url) = (&self.clients, self.url.as_str());
        let (tokens, errors) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.connections())
                .map(|_| {
                    let issued = &issued;
                    scope.spawn(move || {
                        let agent = agent();
                        let mut mine = Vec::new();
                        let mut errors = Vec::new();
                        while Instant::now() < until {
                            let n = issued.fetch_add(1, Ordering::Relaxed);
                            if n >= DISTINCT_TOKENS_MAX {
                                break;
                            }
                            match mint_token(&agent, url, &clients[n % clients.len()]) {
                                Ok(t) => mine.push(t),
                                Err(e) => errors.push(e),
                            }
                        }
                        (mine, errors)
                    })
                })
                .collect();
            let mut tokens = Vec::new();
            let mut errors = Vec::new();
            for h in handles {
                if let Ok((t, e)) = h.join() {
                    tokens.extend(t);
                    errors.extend(e);
                }
            }
            (tokens, errors)
        });
        let distinct_clients = tokens.len().min(clients.len());
        eprintln!(
            "  introspect_distinct: minted {} tokens over {} clients in {:.1} s ({} errors)",
            tokens.len(),
            distinct_clients,
            started.elapsed().as_secs_f64(),
            errors.len()
        );
        if tokens.is_empty() {
            return Err(format!(
                "introspect_distinct: no token could be minted: {}",
                errors.first().map(String::as_str).unwrap_or("no time left")
            ));
        }
        Ok(tokens)
    }

    /// Registers a client, gets its token from --url2, disables it, and times
    /// how long --url2 keeps saying the token is active.
    fn propagation(&mut self) -> Result<Row, String> {
        let mut pooled = self.connection()?;
        let mut conn = Conn::detached(&mut pooled);
        let actor = bench_actor(&mut conn).map_err(|e| format!("propagation: {e}"))?;
        let agent = agent();
        let url2 = self.url2.as_str();
        let admin = self.admin_basic.as_str();
        let rounds = self.args.propagation_rounds;
        let stamp = now();
        let mut delays_us: Vec<u64> = Vec::new();
        let mut polls_total = 0usize;
        let mut errors = 0usize;
        let mut first_error: Option<String> = None;
        let started = Instant::now();
        for round in 0..rounds {
            let name = format!("bench-propagation-{stamp}-{round}");
            let attempt = propagation_round(&mut conn, &actor, &name, &agent, url2, admin);
            match attempt {
                Ok((delay, polls)) => {
                    delays_us.push(delay);
                    polls_total += polls;
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = &first_error {
            eprintln!("  propagation: first error: {e}");
        }
        delays_us.sort_unstable();
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        let p50_ms = ms(percentile(&delays_us, 0.50));
        let p99_ms = ms(percentile(&delays_us, 0.99));
        let p999_ms = ms(percentile(&delays_us, 0.999));
        let max_ms = ms(delays_us.last().copied());
        let mut json = self.common.clone();
        json["scenario"] = "propagation".into();
        json["url2"] = url2.into();
        json["rounds"] = rounds.into();
        json["measured"] = delays_us.len().into();
        json["seconds"] = round(started.elapsed().as_secs_f64(), 3).into();
        json["p50_ms"] = p50_ms.map(|v| round(v, 2)).into();
        json["p99_ms"] = p99_ms.map(|v| round(v, 2)).into();
        json["max_ms"] = max_ms.map(|v| round(v, 2)).into();
        json["polls_per_round"] = (!delays_us.is_empty())
            .then(|| round(polls_total as f64 / delays_us.len() as f64, 2))
            .into();
        json["errors"] = errors.into();
        eprintln!(
            "  propagation: {} of {} changes seen at {url2}: p50 {} ms, p99 {} ms, max {} ms",
            delays_us.len(),
            rounds,
            fmt_opt(p50_ms, 2),
            fmt_opt(p99_ms, 2),
            fmt_opt(max_ms, 2),
        );
        Ok(Row {
            scenario: "propagation",
            rps: None,
            p50_ms,
            p99_ms,
            p999_ms,
            errors,
            unsent: None,
            db_per_req: None,
            json,
        })
    }
}

/// One propagation measurement: the delay (microseconds) between disabling
/// a fresh client and `url2` reporting its token inactive, and the number of
/// introspections it took.
fn propagation_round(
    conn: &mut Conn<'_>,
    actor: &Actor,
    name: &str,
    agent: &Http,
    url2: &str,
    admin_basic: &str,
) -> Result<(u64, usize), String> {
    let (view, credential) = clients::register(
        conn,
        actor,
        NewClient {
            name: name.to_string(),
            role: "reader".into(),
            can_renew: Some(true),
            ..NewClient::default()
        },
    )
    .map_err(|e| format!("register: {e}"))?;
    let IssuedCredential::ClientSecret(secret) = credential else {
        return Err("register gave no client secret".into());
    };
    let client = Credentials {
        client_id: view.client_id.clone(),
        secret: secret.expose().to_string(),
    };
    let token = mint_token(agent, url2, &client)?;
    if !introspect(agent, url2, admin_basic, &token)? {
        return Err("a fresh token is already inactive".into());
    }
    clients::change_status(conn, actor, &view.client_id, StatusChange::Disable)
        .map_err(|e| format!("disable: {e}"))?;
    let changed = Instant::now();
    let mut polls = 0usize;
    loop {
        polls += 1;
        if !introspect(agent, url2, admin_basic, &token)? {
            return Ok((changed.elapsed().as_micros() as u64, polls));
        }
        if changed.elapsed() > PROPAGATION_TIMEOUT {
            return Err(format!(
                "still active {} s after the change",
                PROPAGATION_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The actor the bench registers and disables clients as: an administrator
/// of the root tenant with every admin scope, as the CLI is.
fn bench_actor(conn: &mut AnyConnection) -> Result<Actor, String> {
    let root = tenants::root(conn)
        .map_err(|e| format!("reading the root tenant: {e}"))?
        .ok_or("the store has no root tenant")?;
    Ok(Actor {
        client_id: None,
        user_id: None,
        name: "bench".into(),
        tenant_id: root.id.to_string(),
        tenant_path: root.path.to_string(),
        scopes: ScopeSet::all_admin(),
        ip: None,
    })
}

/// Registers `count` active client_credentials clients (role reader,
/// can_renew) through `clients::register`, the path the CLI and the admin
/// API take, so that they are what the server would have made (scopes from
/// the role, a change announced, an audit event). `BATCH` of them share one
/// write transaction (`register_in`): one commit
/// (and on SQLite one fsync) per batch instead of per client.
fn seed_clients(
    conn: &mut Conn<'_>,
    actor: &Actor,
    count: usize,
) -> Result<Vec<Credentials>, String> {
    let mut created = Vec::with_capacity(count);
    let stamp = now();
    let started = Instant::now();
    let mut next_report = SEED_REPORT_EVERY;
    while created.len() < count {
        let from = created.len();
        let n = BATCH.min(count - from);
        let batch = conn
            .write(|tx| {
                let mut batch = Vec::with_capacity(n);
                for i in from..from + n {
                    let (view, credential) = clients::register_in(
                        tx,
                        actor,
                        NewClient {
                            name: format!("bench-{stamp}-{i}"),
                            role: "reader".into(),
                            can_renew: Some(true),
                            ..NewClient::default()
                        },
                    )?;
                    let IssuedCredential::ClientSecret(secret) = credential else {
                        return Err(ServiceError::Internal(
                            "register gave no client secret".into(),
                        ));
                    };
                    batch.push(Credentials {
                        client_id: view.client_id,
                        secret: secret.expose().to_string(),
                    });
                }
                Ok::<_, ServiceError>(batch)
            })
            .map_err(|e| format!("registering bench clients: {e}"))?;
        created.extend(batch);
        if created.len() >= next_report && created.len() < count {
            eprintln!(
                "  {} of {count} clients in {:.1} s",
                created.len(),
                started.elapsed().as_secs_f64()
            );
            next_report += SEED_REPORT_EVERY;
        }
    }
    Ok(created)
}

/// `--seed bulk`: one client registered through `clients::register` as the
/// template, then `count - 1` copies of its row (a new id, name and secret
/// each) inserted `BULK_ROWS_PER_STATEMENT` to a statement, `BULK_BATCH` to
/// a transaction. The rows are those the server would have made; what is
/// skipped is each client's audit event and change notice (new ids, which
/// no node has cached).
fn seed_clients_in_bulk(
    conn: &mut Conn<'_>,
    actor: &Actor,
    count: usize,
) -> Result<Vec<Credentials>, String> {
    use keyward::store::models::{self, ClientSecret};
    use keyward::tokens::opaque;

    let mut created = seed_clients(conn, actor, 1)?;
    let template = keyward::store::clients::find_with_path(conn, &created[0].client_id)
        .map_err(|e| format!("reading the template client: {e}"))?
        .map(|(client, _)| models::Client::from(&client))
        .ok_or("the template client is gone")?;
    let stamp = now();
    let started = Instant::now();
    let mut next_report = SEED_REPORT_EVERY;
    while created.len() < count {
        let n = BULK_BATCH.min(count - created.len());
        let mut rows = Vec::with_capacity(n);
        let mut secrets = Vec::with_capacity(n);
        let mut batch = Vec::with_capacity(n);
        for i in created.len()..created.len() + n {
            let client_id = opaque::random_id(opaque::CLIENT_ID_PREFIX);
            let secret = opaque::generate(opaque::CLIENT_SECRET_PREFIX);
            secrets.push(ClientSecret {
                id: opaque::random_id("sec_"),
                client_id: client_id.clone(),
                secret_hash: secret.hash(),
                created_at: template.created_at,
                expires_at: None,
            });
            rows.push(models::Client {
                client_id: client_id.clone(),
                name: format!("bench-{stamp}-{i}"),
                ..template.clone()
            });
            batch.push(Credentials {
                client_id,
                secret: secret.expose().to_string(),
            });
        }
        conn.write(|tx| insert_bulk(tx, &rows, &secrets))
            .map_err(|e| format!("inserting bench clients: {e}"))?;
        created.extend(batch);
        if created.len() >= next_report && created.len() < count {
            eprintln!(
                "  {} of {count} clients in {:.1} s",
                created.len(),
                started.elapsed().as_secs_f64()
            );
            next_report += SEED_REPORT_EVERY;
        }
    }
    Ok(created)
}

/// Many rows a statement on PostgreSQL; one a statement on SQLite (whose
/// multi-row INSERT cannot leave a column to its default), where a
/// transaction's rows cost one commit all the same.
fn insert_bulk(
    conn: &mut AnyConnection,
    rows: &[keyward::store::models::Client],
    secrets: &[keyward::store::models::ClientSecret],
) -> Result<(), diesel::result::Error> {
    use diesel::RunQueryDsl as _;
    use keyward::store::schema::{client_secrets, clients};
    match conn {
        AnyConnection::Postgresql(pg) => {
            for chunk in rows.chunks(BULK_ROWS_PER_STATEMENT) {
                diesel::insert_into(clients::table)
                    .values(chunk)
                    .execute(pg)?;
            }
            for chunk in secrets.chunks(BULK_ROWS_PER_STATEMENT) {
                diesel::insert_into(client_secrets::table)
                    .values(chunk)
                    .execute(pg)?;
            }
        }
        AnyConnection::Sqlite(lite) => {
            for row in rows {
                diesel::insert_into(clients::table)
                    .values(row)
                    .execute(lite)?;
            }
            for secret in secrets {
                diesel::insert_into(client_secrets::table)
                    .values(secret)
                    .execute(lite)?;
            }
        }
    }
    Ok(())
}

/// The first `count` clients of a `--credentials` file.
fn read_credentials(path: &Path, count: usize) -> Result<Vec<Credentials>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let clients: Vec<Credentials> = text
        .lines()
        .take(count)
        .filter_map(|line| {
            let (client_id, secret) = line.split_once(' ')?;
            Some(Credentials {
                client_id: client_id.to_string(),
                secret: secret.to_string(),
            })
        })
        .collect();
    if clients.len() < count {
        return Err(format!(
            "{} holds {} clients, fewer than --clients {count}",
            path.display(),
            clients.len()
        ));
    }
    Ok(clients)
}

fn write_credentials(path: &Path, clients: &[Credentials]) -> Result<(), String> {
    let mut text = String::with_capacity(clients.len() * 80);
    for client in clients {
        let _ = writeln!(text, "{} {}", client.client_id, client.secret);
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn check_reachable(url: &str) -> Result<(), String> {
    expect_status(agent().send("GET", &format!("{url}/healthz"), &[], ""), 200)
        .map(drop)
        .map_err(|e| format!("the server at {url} is unreachable ({e}); start it with `keyward serve` or give --url"))
}

fn setup(args: Args) -> Result<(Bench, Vec<Scenario>), String> {
    let scenarios = args
        .scenarios
        .clone()
        .unwrap_or_else(|| Scenario::ALL.to_vec());
    let url = args.url.trim_end_matches('/').to_string();
    let url2 = args
        .url2
        .as_deref()
        .unwrap_or(&url)
        .trim_end_matches('/')
        .to_string();
    check_reachable(&url)?;
    if url2 != url && scenarios.contains(&Scenario::Propagation) {
        check_reachable(&url2)?;
    }
    let admin = Admin::load(&args.settings.data_dir)?;
    let db_url = args.settings.database_url();
    let backend = match Backend::from_url(&db_url)? {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let common = json!({
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "url": url,
        "store": backend,
        "connections": args.connections,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "offered_rps": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "clients": args.clients,
        "cores": cores(),
    });
    let mut bench = Bench {
        admin_basic: admin.basic(),
        admin,
        url,
        url2,
        db_url,
        clients: Vec::new(),
        db: None,
        common,
        args,
    };
    let control = agent();
    if scenarios.iter().any(|s| s.needs_admin()) {
        // The admin must work before anything is measured with it.
        let probe = introspect(&control, &bench.url, &bench.admin_basic, "not-a-token");
        if let Err(e) = probe {
            return Err(format!(
                "the bootstrap admin {} from the data directory cannot introspect at {} ({e}): \
                 is --data-dir the server's?",
                bench.admin.client_id, bench.url
            ));
        }
    }
    let kept = bench.args.credentials.clone().filter(|path| path.exists());
    let needs_clients = scenarios.iter().any(|s| s.needs_bench_clients());
    let redacted = keyward::store::redact_url(&bench.db_url);
    if let Some(path) = kept.filter(|_| needs_clients || bench.args.seed_only) {
        bench.clients = read_credentials(&path, bench.args.clients as usize)?;
        eprintln!(
            "using {} bench clients from {}",
            bench.clients.len(),
            path.display()
        );
    } else if needs_clients || bench.args.seed_only {
        let count = bench.args.clients as usize;
        eprintln!("registering {count} bench clients in {redacted} ...");
        let started = Instant::now();
        let mut pooled = bench.connection()?;
        let mut conn = Conn::detached(&mut pooled);
        let actor = bench_actor(&mut conn)?;
        bench.clients = match bench.args.seed {
            Seed::Register => seed_clients(&mut conn, &actor, count)?,
            Seed::Bulk => seed_clients_in_bulk(&mut conn, &actor, count)?,
        };
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "registered {count} clients in {took:.2} s ({:.0} clients/s)",
            count as f64 / took.max(1e-9)
        );
        bench.common["clients_created_s"] = round(took, 3).into();
        if let Some(path) = &bench.args.credentials {
            write_credentials(path, &bench.clients)?;
        }
    }
    if bench.args.seed_only {
        return Ok((bench, Vec::new()));
    }
    if needs_clients {
        // The server must see them: the same store, not just the same schema.
        if let Err(e) = mint_token(&control, &bench.url, &bench.clients[0]) {
            return Err(format!(
                "the server at {} does not accept a client just created in {redacted} ({e}): \
                 give the bench the server's KEYWARD_DATABASE_URL / --data-dir",
                bench.url
            ));
        }
        if bench.clients.len() > 1 {
            bench.warm_clients();
        }
    }
    Ok((bench, scenarios))
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn main() -> ExitCode {
    let args = Args::parse();
    TIMELINE.store(args.timeline, Ordering::Relaxed);
    if let Some(pid) = args.alternate {
        let _ = ALTERNATE.set(Alternate {
            pid,
            every: Duration::from_secs(args.alternate_every),
            guard: Duration::from_millis(args.alternate_guard_ms),
        });
    }
    let (mut bench, scenarios) = match setup(args) {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut header = String::new();
    let _ = write!(
        header,
        "keyward load  {}  cores={}  url={}  store={}  connections={}  duration={}s  warmup={}s  clients={}",
        bench.common["date"].as_str().unwrap_or_default(),
        cores(),
        bench.url,
        bench.common["store"].as_str().unwrap_or_default(),
        bench.args.connections,
        bench.args.duration,
        bench.args.warmup,
        bench.args.clients,
    );
    if let Some(took) = bench.common["clients_created_s"].as_f64() {
        let _ = write!(header, " (registered in {took:.2}s)");
    }
    match bench.args.rate {
        Some(rate) => {
            let _ = write!(header, "  open loop at {rate} req/s");
        }
        None => header.push_str("  closed loop"),
    }
    println!("{header}");
    eprintln!("{}", table_header());
    let mut rows = Vec::new();
    let mut failed = false;
    for scenario in scenarios {
        match bench.run(scenario) {
            Ok(row) => {
                eprintln!("{}", row.line());
                rows.push(row);
            }
            Err(e) => {
                eprintln!("  {}: not run: {e}", scenario.name());
                failed = true;
            }
        }
    }
    println!("{}", table_header());
    for row in &rows {
        println!("{}", row.line());
    }
    for row in &rows {
        println!("RESULT {}", row.json);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! Settings. Every one comes from a `KEYWARD_*` environment variable or the
//! matching command-line flag; this file is the one place they are defined,
//! and `keyward --help` prints them. The README's table mirrors it.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::tokens::keys::SigningAlg;

/// Shown apart from each command's own options: they are the server's (and
/// the store's) settings, the same for every command.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Settings (each also a KEYWARD_* environment variable)")]
pub struct Settings {
    /// Address and port the server listens on.
    #[arg(
        long,
        env = "KEYWARD_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: String,

    /// Issuer URL: the `iss` claim and the base of every endpoint URL in
    /// discovery. Default: http://<bind>.
    #[arg(long, env = "KEYWARD_ISSUER", global = true)]
    pub issuer: Option<String>,

    /// Store URL: postgres://... or sqlite://<path>. Default: SQLite at
    /// <data dir>/keyward.db.
    #[arg(long, env = "KEYWARD_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory for local state (SQLite file, bootstrap-admin.json).
    #[arg(
        long,
        env = "KEYWARD_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Directory of the signing keys (PKCS#8 PEM files).
    #[arg(
        long,
        env = "KEYWARD_KEYS_DIR",
        default_value = "./keys",
        global = true
    )]
    pub keys_dir: PathBuf,

    /// Algorithm of new signing keys: EdDSA, ES256 or RS256.
    #[arg(
        long,
        env = "KEYWARD_SIGNING_ALG",
        default_value = "EdDSA",
        global = true
    )]
    pub signing_alg: SigningAlg,

    /// Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is
    /// believed. None by default: the peer address is the client address.
    #[arg(long, env = "KEYWARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr, global = true)]
    pub trusted_proxies: Vec<IpNet>,

    /// Where the change listener connects (PostgreSQL LISTEN needs a session
    /// of its own). Default: the store URL. Set it to a direct connection
    /// when KEYWARD_DATABASE_URL goes through a transaction-mode pooler such
    /// as PgBouncer, where LISTEN does not work.
    #[arg(long, env = "KEYWARD_LISTEN_DATABASE_URL", global = true)]
    pub listen_database_url: Option<String>,

    /// Whether pooled PostgreSQL connections cache prepared statements.
    /// Set false behind a transaction-mode pooler (PgBouncer before 1.21),
    /// where a named statement prepared in one transaction is gone in the next.
    #[arg(
        long,
        env = "KEYWARD_DB_STATEMENT_CACHE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub db_statement_cache: bool,

    /// Database connections per server process.
    #[arg(
        long,
        env = "KEYWARD_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: u32,

    /// HTTP worker threads. Default: one per CPU core.
    #[arg(long, env = "KEYWARD_WORKERS", global = true)]
    pub workers: Option<usize>,

    /// Failed authentications (401 answers, failed console sign-ins) one
    /// source address (an IPv6 /64) may make in a window; past that, every
    /// endpoint that authenticates answers it 429 `slow_down` until the
    /// window ends. 0 turns the throttle off.
    #[arg(
        long,
        env = "KEYWARD_AUTH_FAILURE_LIMIT",
        default_value_t = 100,
        global = true
    )]
    pub auth_failure_limit: u32,

    /// Length of the fixed window in which failures are counted, in seconds
    /// (at least 1).
    #[arg(
        long,
        env = "KEYWARD_AUTH_FAILURE_WINDOW",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub auth_failure_window: u64,

    /// Days after a credential expired or was revoked before it is removed
    /// with its hashes (API.md section 4, "Retention"). 0 removes whatever
    /// has expired or been revoked.
    #[arg(
        long,
        env = "KEYWARD_RETENTION_DAYS",
        default_value_t = 28,
        value_parser = clap::value_parser!(i64).range(0..=36_500),
        global = true
    )]
    pub retention_days: i64,

    /// Days the audit log keeps an event; unset: forever.
    #[arg(
        long,
        env = "KEYWARD_AUDIT_RETENTION_DAYS",
        value_parser = clap::value_parser!(i64).range(1..=36_500),
        global = true
    )]
    pub audit_retention_days: Option<i64>,

    /// Where expiry notices are sent from (API.md section 4): `smtp://` with
    /// STARTTLS, `smtps://` with TLS, user and password in the URL. Unset:
    /// no mail is sent (notices are still recorded), and the log says so.
    #[arg(long, env = "KEYWARD_SMTP_URL", global = true)]
    pub smtp_url: Option<String>,

    /// The notices' From address, such as `keyward <keyward@example.com>`.
    #[arg(long, env = "KEYWARD_SMTP_FROM", global = true)]
    pub smtp_from: Option<String>,

    /// A PEM file of a CA to trust for the SMTP server, besides the system's.
    #[arg(long, env = "KEYWARD_SMTP_CA_FILE", global = true)]
    pub smtp_ca_file: Option<PathBuf>,

    /// Days before expiry at which an owner gets a notice, comma-separated.
    #[arg(
        long,
        env = "KEYWARD_NOTICE_DAYS",
        value_delimiter = ',',
        default_values_t = [14, 7, 1],
        value_parser = clap::value_parser!(i64).range(1..=3650),
        global = true
    )]
    pub notice_days: Vec<i64>,

    /// How often a server looks for due notices, and the base of the retry
    /// backoff: `1h`, `30s`, `5min` or seconds (here `min` is minutes).
    #[arg(
        long,
        env = "KEYWARD_NOTICE_INTERVAL",
        default_value = "1h",
        value_parser = parse_interval,
        global = true
    )]
    pub notice_interval: u64,

    /// Attempts at sending one notice before it stays `failed`.
    #[arg(
        long,
        env = "KEYWARD_NOTICE_MAX_ATTEMPTS",
        default_value_t = 10,
        value_parser = clap::value_parser!(i64).range(1..=1000),
        global = true
    )]
    pub notice_max_attempts: i64,

    /// Fetch JWK Sets and discovery documents over plain http and from
    /// loopback, link-local and private addresses. Development and tests
    /// only: otherwise a sub-tenant admin could point `jwks_uri` at a
    /// service on the server's own network.
    #[arg(
        long,
        env = "KEYWARD_ALLOW_INSECURE_JWKS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub allow_insecure_jwks: bool,

    /// Not a setting: the clock the credential directory checks expiry and
    /// graces against. None is the system's; tests give a `ManualClock` to
    /// move time instead of sleeping.
    #[arg(skip)]
    pub clock: Option<std::sync::Arc<dyn crate::clock::Clock>>,
}

/// `KEYWARD_NOTICE_INTERVAL`: `1h`, `30s`, `5min` or plain seconds, at
/// least one second.
pub fn parse_interval(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 1h, 30s or 5min"))?;
    let seconds = match unit.trim() {
        "s" | "sec" => n,
        "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "{value:?} is not a duration such as 1h, 30s or 5min"
            ))
        }
    };
    if seconds == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(seconds)
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`192.0.2.7`).
pub fn parse_cidr(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not a CIDR (such as 10.0.0.0/8) or an IP address"))
}

/// Like the derived one, but a password in `database_url` never reaches a log.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("issuer", &self.issuer)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::store::redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field("keys_dir", &self.keys_dir)
            .field("signing_alg", &self.signing_alg)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("db_pool_size", &self.db_pool_size)
            .field("workers", &self.workers)
            .field("retention_days", &self.retention_days)
            .field("audit_retention_days", &self.audit_retention_days)
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(crate::mail::redact),
            )
            .field("smtp_from", &self.smtp_from)
            .field("notice_days", &self.notice_days)
            .field("notice_interval", &self.notice_interval)
            .field("allow_insecure_jwks", &self.allow_insecure_jwks)
            .finish()
    }
}

impl Settings {
    pub fn retention(&self) -> crate::service::retention::Policy {
        crate::service::retention::Policy {
            days: self.retention_days,
            audit_days: self.audit_retention_days,
        }
    }

    pub fn notice_policy(&self) -> crate::service::notices::NoticePolicy {
        let mut thresholds = self.notice_days.clone();
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        thresholds.dedup();
        crate::service::notices::NoticePolicy {
            thresholds,
            interval: i64::try_from(self.notice_interval).unwrap_or(i64::MAX),
            max_attempts: self.notice_max_attempts,
            issuer: self.issuer(),
        }
    }

    pub fn issuer(&self) -> String {
        let issuer = self
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind));
        issuer.trim_end_matches('/').to_string()
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("keyward.db").display()))
    }

    /// Settings as they are with no environment at all.
    pub fn defaults() -> Settings {
        Settings {
            bind: "127.0.0.1:8080".to_string(),
            issuer: None,
            database_url: None,
            data_dir: PathBuf::from("./data"),
            keys_dir: PathBuf::from("./keys"),
            signing_alg: SigningAlg::EdDSA,
            trusted_proxies: Vec::new(),
            listen_database_url: None,
            db_statement_cache: true,
            db_pool_size: 16,
            workers: None,
            auth_failure_limit: 100,
            auth_failure_window: 60,
            retention_days: 28,
            audit_retention_days: None,
            smtp_url: None,
            smtp_from: None,
            smtp_ca_file: None,
            notice_days: vec![14, 7, 1],
            notice_interval: 3600,
            notice_max_attempts: 10,
            allow_insecure_jwks: false,
            clock: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_intervals_read_as_the_contract_writes_them() {
        assert_eq!(parse_interval("1h"), Ok(3600));
        assert_eq!(parse_interval("30s"), Ok(30));
        assert_eq!(parse_interval("5min"), Ok(300));
        assert_eq!(parse_interval("90"), Ok(90));
        assert!(parse_interval("0").is_err());
        assert!(
            parse_interval("1m").is_err(),
            "1m is a month for clients: refused here"
        );
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn debug_hides_the_database_password() {
        let mut settings = Settings::defaults();
        settings.database_url = Some("postgres://keyward:hunter2secret@db.example:5432/kw".into());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
        settings.database_url =
            Some("postgres://db.example/kw?user=k&password=hunter3secret".into());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter3secret"), "{shown}");
    }
}

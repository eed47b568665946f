//! Change announcements: how every server process learns, at once, that a
//! credential changed, so that a cache never serves a revoked, disabled or
//! deleted credential beyond a few milliseconds.
//!
//! A service announces each change with `Tx::announce` (src/store/tx.rs),
//! inside its write transaction. On PostgreSQL that is a
//! `NOTIFY keyward_changes` (delivered to every node at commit). SQLite has
//! no NOTIFY, and its other writer is another process (the CLI): there the
//! change is a row of `change_log` written in the same transaction, which
//! the server follows (`LogFollower`), woken by `PRAGMA data_version`. The
//! node that made the change also applies it to its own cache right after
//! the commit, through the subscriber its `Conn` carries.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::AnyConnection;

pub const CHANNEL: &str = "keyward_changes";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client's row, status or secrets changed, or it was deleted.
    Client(String),
    /// Many clients were deleted at once (retention): one notification for
    /// a batch instead of one each. `Tx::announce` splits a long list so
    /// that each payload stays under NOTIFY's 8000 bytes.
    Clients(Vec<String>),
    /// An API token (by its SHA-256) was revoked.
    ApiToken(String),
    /// An access token (by jti) was revoked.
    Jti(String),
    /// The tenant tree changed.
    Tenants,
    /// A signing key was added.
    Keys,
    /// A user was disabled, deleted or given another role: its sessions
    /// ended (a node that caches sessions drops the user's).
    User(String),
    /// A trusted issuer was added or removed.
    TrustedIssuers,
}

impl Change {
    pub fn payload(&self) -> String {
        match self {
            Change::Client(id) => format!("client:{id}"),
            Change::Clients(ids) => format!("clients:{}", ids.join(",")),
            Change::ApiToken(hash) => format!("apitoken:{hash}"),
            Change::Jti(jti) => format!("jti:{jti}"),
            Change::Tenants => "tenants:".into(),
            Change::Keys => "keys:".into(),
            Change::User(id) => format!("user:{id}"),
            Change::TrustedIssuers => "issuers:".into(),
        }
    }

    pub fn parse(payload: &str) -> Option<Change> {
        let (kind, rest) = payload.split_once(':')?;
        Some(match kind {
            "client" => Change::Client(rest.to_string()),
            "clients" => Change::Clients(
                rest.split(',')
                    .filter(|id| !id.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            "apitoken" => Change::ApiToken(rest.to_string()),
            "jti" => Change::Jti(rest.to_string()),
            "tenants" => Change::Tenants,
            "keys" => Change::Keys,
            "user" => Change::User(rest.to_string()),
            "issuers" => Change::TrustedIssuers,
            _ => return None,
        })
    }
}

/// A session LISTENing on the change channel (PostgreSQL only).
pub struct Listening {
    conn: diesel::PgConnection,
}

impl Listening {
    /// Opens a session at `url`, LISTENs, and only then reads the revoked
    /// jtis still live at `now`: a revocation committed in between is both
    /// read and heard, never neither.
    pub fn open(url: &str, now: i64) -> Result<(Listening, Vec<String>), String> {
        use diesel::connection::SimpleConnection as _;
        let pg = diesel::PgConnection::establish(url).map_err(|e| e.to_string())?;
        let mut conn = AnyConnection::Postgresql(pg);
        conn.batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(|e| e.to_string())?;
        let revoked = super::revoked::live(&mut conn, now).map_err(|e| e.to_string())?;
        let AnyConnection::Postgresql(conn) = conn else {
            unreachable!("opened as PostgreSQL")
        };
        Ok((Listening { conn }, revoked))
    }

    /// Hands each notification received so far to `each`, without waiting.
    /// An error: the session is lost.
    pub fn drain(&mut self, mut each: impl FnMut(&str)) -> Result<(), String> {
        for notification in self.conn.notifications_iter() {
            let notification = notification.map_err(|e| e.to_string())?;
            each(&notification.payload);
        }
        Ok(())
    }
}

/// How long a SQLite change-log row is kept. A follower reads the log every
/// few milliseconds; one that fell this far behind has long stopped
/// trusting its cache and starts over (`LogFollower::open`).
pub const LOG_KEEP_SECS: i64 = 600;

/// A server following SQLite's change log on a connection of its own.
/// `PRAGMA data_version` changes when another connection (any process)
/// committed: polling it costs no read of the database file, so the log
/// itself is read only after a commit.
pub struct LogFollower {
    conn: diesel::SqliteConnection,
    data_version: i64,
    /// The newest log row applied.
    cursor: i64,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = BigInt)]
    data_version: i64,
}

#[derive(QueryableByName)]
struct Newest {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Logged {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    payload: String,
}

impl LogFollower {
    /// Opens a connection at `url`, notes the newest log row, and only then
    /// reads the revoked jtis still live at `now`: a revocation committed
    /// in between is both read and found in the log, never neither.
    pub fn open(url: &str, now: i64) -> Result<(LogFollower, Vec<String>), String> {
        // Not `establish`: the follower's polls are not requests' round
        // trips and stay out of `keyward_db_queries_total`.
        let conn = super::ConnectionManager::new(url)?
            .open()
            .map_err(|e| e.to_string())?;
        let AnyConnection::Sqlite(conn) = conn else {
            return Err("the change log is SQLite's".into());
        };
        let mut follower = LogFollower {
            conn,
            data_version: 0,
            cursor: 0,
        };
        follower.data_version = follower.data_version()?;
        follower.cursor = diesel::sql_query("SELECT COALESCE(MAX(id), 0) AS id FROM change_log")
            .get_result::<Newest>(&mut follower.conn)
            .map_err(|e| e.to_string())?
            .id;
        let mut any = AnyConnection::Sqlite(follower.conn);
        let revoked = super::revoked::live(&mut any, now).map_err(|e| e.to_string());
        let AnyConnection::Sqlite(conn) = any else {
            unreachable!("opened as SQLite")
        };
        follower.conn = conn;
        Ok((follower, revoked?))
    }

    fn data_version(&mut self) -> Result<i64, String> {
        Ok(diesel::sql_query("PRAGMA data_version")
            .get_result::<Version>(&mut self.conn)
            .map_err(|e| e.to_string())?
            .data_version)
    }

    /// Hands each change committed since the last poll to `each`, in commit
    /// order. Cheap when nothing was committed. An error: the connection is
    /// lost (or the file unreadable); open again.
    pub fn poll(&mut self, mut each: impl FnMut(&str)) -> Result<(), String> {
        let version = self.data_version()?;
        if version == self.data_version {
            return Ok(());
        }
        // Read after the version: a commit in between is read now and
        // moves the version again, which only costs an empty read.
        self.data_version = version;
        let rows = diesel::sql_query("SELECT id, payload FROM change_log WHERE id > ? ORDER BY id")
            .bind::<BigInt, _>(self.cursor)
            .load::<Logged>(&mut self.conn)
            .map_err(|e| e.to_string())?;
        for row in rows {
            each(&row.payload);
            self.cursor = row.id;
        }
        Ok(())
    }
}

/// Removes change-log rows older than `LOG_KEEP_SECS`. SQLite only;
/// nothing to do on PostgreSQL.
pub fn prune_log(conn: &mut AnyConnection) -> QueryResult<usize> {
    match conn {
        AnyConnection::Sqlite(lite) => {
            diesel::sql_query("DELETE FROM change_log WHERE created_at < ?")
                .bind::<BigInt, _>(wall_clock_secs() - LOG_KEEP_SECS)
                .execute(lite)
        }
        AnyConnection::Postgresql(_) => Ok(0),
    }
}

/// Tells the other nodes and processes of a change, inside the caller's
/// transaction: a NOTIFY on PostgreSQL, a change-log row on SQLite.
pub fn publish(conn: &mut AnyConnection, payload: &str) -> QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(_) => notify(conn, payload),
        AnyConnection::Sqlite(lite) => {
            diesel::sql_query("INSERT INTO change_log (payload, created_at) VALUES (?, ?)")
                .bind::<Text, _>(payload)
                .bind::<BigInt, _>(wall_clock_secs())
                .execute(lite)
                .map(|_| ())
        }
    }
}

/// The log's age is the machine's business, not the service clock's (tests
/// move that one by days).
fn wall_clock_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Who is told of the changes a node commits (its own cache).
pub type Subscriber = dyn Fn(&Change) + Send + Sync;

/// A raw NOTIFY on the change channel: `publish` for a change, the
/// listener for its heartbeat. Nothing on SQLite (see `publish`).
pub fn notify(conn: &mut AnyConnection, payload: &str) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(pg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection as _;

    use super::*;

    #[test]
    fn payloads_round_trip() {
        for change in [
            Change::Client("kwc_1".into()),
            Change::Clients(vec!["kwc_1".into(), "kwc_2".into()]),
            Change::ApiToken("ab".into()),
            Change::Jti("j:1".into()),
            Change::Tenants,
            Change::Keys,
            Change::User("usr_1".into()),
            Change::TrustedIssuers,
        ] {
            assert_eq!(Change::parse(&change.payload()), Some(change));
        }
        assert_eq!(Change::parse("nonsense"), None);
    }

    /// A migrated SQLite store in a fresh directory (the follower needs a
    /// file: it opens a connection of its own).
    fn sqlite_store() -> (tempfile::TempDir, String, AnyConnection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let mut conn = super::super::ConnectionManager::new(&url)
            .expect("url")
            .open()
            .expect("open");
        super::super::migrate_and(&mut conn, |_| Ok(())).expect("migrations");
        (dir, url, conn)
    }

    fn polled(follower: &mut LogFollower) -> Vec<String> {
        let mut seen = Vec::new();
        follower.poll(|p| seen.push(p.to_string())).expect("poll");
        seen
    }

    #[test]
    fn the_log_follower_sees_what_other_connections_commit_in_order_and_nothing_else() {
        let (_dir, url, mut writer) = sqlite_store();
        publish(&mut writer, "client:kwc_before").expect("publish");
        let (mut follower, revoked) = LogFollower::open(&url, 0).expect("follower");
        assert!(revoked.is_empty());
        // What was logged before it opened is not replayed.
        assert!(polled(&mut follower).is_empty());
        publish(&mut writer, "client:kwc_1").expect("publish");
        publish(&mut writer, "tenants:").expect("publish");
        assert_eq!(polled(&mut follower), ["client:kwc_1", "tenants:"]);
        assert!(polled(&mut follower).is_empty(), "each row once");
        // A rolled-back write leaves no row to follow.
        writer.batch_execute("BEGIN").expect("begin");
        publish(&mut writer, "client:kwc_rolled_back").expect("publish");
        writer.batch_execute("ROLLBACK").expect("rollback");
        publish(&mut writer, "jti:j1").expect("publish");
        assert_eq!(polled(&mut follower), ["jti:j1"]);
    }

    #[test]
    fn pruning_keeps_the_log_young_and_a_follower_never_rereads_a_pruned_id() {
        let (_dir, url, mut writer) = sqlite_store();
        let (mut follower, _) = LogFollower::open(&url, 0).expect("follower");
        publish(&mut writer, "client:kwc_old").expect("publish");
        assert_eq!(polled(&mut follower), ["client:kwc_old"]);
        let AnyConnection::Sqlite(lite) = &mut writer else {
            unreachable!()
        };
        diesel::sql_query("UPDATE change_log SET created_at = created_at - ?")
            .bind::<BigInt, _>(LOG_KEEP_SECS + 1)
            .execute(lite)
            .expect("age the row");
        assert_eq!(prune_log(&mut writer).expect("prune"), 1);
        publish(&mut writer, "client:kwc_new").expect("publish");
        assert_eq!(prune_log(&mut writer).expect("prune"), 0, "young rows stay");
        // The newest row was pruned, yet its id is not handed out again.
        assert_eq!(polled(&mut follower), ["client:kwc_new"]);
    }
}

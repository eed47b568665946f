//! Change announcements: how every server process learns, at once, that a
//! credential changed, so that a cache never serves a revoked, disabled or
//! deleted credential beyond a few milliseconds.
//!
//! A service announces each change with `Tx::announce` (src/store/tx.rs),
//! inside its write transaction. On PostgreSQL that is a
//! `NOTIFY keyward_changes` (delivered to every node at commit). The node
//! that made the change also applies it to its own cache right after the
//! commit, through the subscriber its `Conn` carries.

use diesel::prelude::*;
use diesel::sql_types::Text;

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

/// Who is told of the changes a node commits (its own cache).
pub type Subscriber = dyn Fn(&Change) + Send + Sync;

/// A raw NOTIFY on the change channel: `Tx::announce` for a change, the
/// listener for its heartbeat. SQLite has one node: nothing to send.
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
}

//! Change announcements: how every server process learns, at once, that a
//! credential changed, so that a cache never serves a revoked, disabled or
//! deleted credential beyond a few milliseconds.
//!
//! A service announces each change inside its write transaction. On
//! PostgreSQL that is a `NOTIFY keyward_changes` (delivered to every node at
//! commit). The node that made the change also applies it to its own cache
//! right after the commit (the subscriber `Db::run` installs for the work it
//! runs), so it sees its own changes before its next request.

use std::cell::RefCell;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::AnyConnection;

pub const CHANNEL: &str = "keyward_changes";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client's row, status or secrets changed, or it was deleted.
    Client(String),
    /// An API token (by its SHA-256) was revoked.
    ApiToken(String),
    /// An access token (by jti) was revoked.
    Jti(String),
    /// The tenant tree changed.
    Tenants,
    /// A signing key was added.
    Keys,
}

impl Change {
    pub fn payload(&self) -> String {
        match self {
            Change::Client(id) => format!("client:{id}"),
            Change::ApiToken(hash) => format!("apitoken:{hash}"),
            Change::Jti(jti) => format!("jti:{jti}"),
            Change::Tenants => "tenants:".into(),
            Change::Keys => "keys:".into(),
        }
    }

    pub fn parse(payload: &str) -> Option<Change> {
        let (kind, rest) = payload.split_once(':')?;
        Some(match kind {
            "client" => Change::Client(rest.to_string()),
            "apitoken" => Change::ApiToken(rest.to_string()),
            "jti" => Change::Jti(rest.to_string()),
            "tenants" => Change::Tenants,
            "keys" => Change::Keys,
            _ => return None,
        })
    }
}

pub type Subscriber = dyn Fn(&Change) + Send + Sync;

thread_local! {
    static PENDING: RefCell<Vec<Change>> = const { RefCell::new(Vec::new()) };
    static CURRENT: RefCell<Option<Arc<Subscriber>>> = const { RefCell::new(None) };
}

/// Runs `f` with `subscriber` told of the changes it commits.
pub fn with_subscriber<T>(subscriber: Option<Arc<Subscriber>>, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT.with(|c| c.replace(subscriber));
    let result = f();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    result
}

/// Announces a change from inside a write transaction.
pub fn announce(conn: &mut AnyConnection, change: Change) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(change.payload())
            .execute(pg)?;
    }
    PENDING.with(|p| p.borrow_mut().push(change));
    Ok(())
}

/// A raw NOTIFY on the change channel (the listener's heartbeat).
pub fn notify(conn: &mut AnyConnection, payload: &str) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(pg)?;
    }
    Ok(())
}

/// Sends a change outside any transaction (the CLI after a key rotation).
pub fn announce_now(conn: &mut AnyConnection, change: Change) -> QueryResult<()> {
    announce(conn, change)?;
    committed();
    Ok(())
}

/// The outermost transaction committed: apply its changes in this process.
pub(crate) fn committed() {
    let changes: Vec<Change> = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if changes.is_empty() {
        return;
    }
    if let Some(subscriber) = CURRENT.with(|c| c.borrow().clone()) {
        for change in &changes {
            subscriber(change);
        }
    }
}

/// The outermost transaction rolled back: nothing happened.
pub(crate) fn discard() {
    PENDING.with(|p| p.borrow_mut().clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for change in [
            Change::Client("kwc_1".into()),
            Change::ApiToken("ab".into()),
            Change::Jti("j:1".into()),
            Change::Tenants,
            Change::Keys,
        ] {
            assert_eq!(Change::parse(&change.payload()), Some(change));
        }
        assert_eq!(Change::parse("nonsense"), None);
    }
}

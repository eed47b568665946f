//! The two ways a service holds the store: `Conn` to read, `Tx` to change.
//!
//! A change is made only inside `Conn::write`, which hands out a `Tx`. The
//! `Tx` is the only way to announce a change to the other nodes
//! (`tx.announce`) and to write the audit log (`tx.audit`), so neither can
//! happen outside a transaction, and neither outlives a rollback: the
//! announcements are NOTIFYs sent inside the transaction (PostgreSQL delivers
//! them at commit, drops them on rollback) or, on SQLite, rows of its change
//! log written in it (`store::changes::publish`), and the same changes are applied
//! to this node's own cache right after the commit, by the subscriber the
//! `Conn` carries, so this node sees its own change before its next request.
//! Nothing is kept in thread-local state: what a transaction announced is a
//! value of that transaction.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use diesel::prelude::*;

use super::changes::{self, Change, Subscriber};
use super::{audit, write_transaction, AnyConnection};

/// A pooled connection as services get it from `Db::run`/`Db::run_here`.
/// Reads go straight to the connection (it dereferences to one); changes go
/// through `write`.
pub struct Conn<'c> {
    db: &'c mut AnyConnection,
    /// This node's cache, told of what each committed `write` announced.
    subscriber: Option<Arc<Subscriber>>,
}

impl<'c> Conn<'c> {
    pub fn new(db: &'c mut AnyConnection, subscriber: Option<Arc<Subscriber>>) -> Conn<'c> {
        Conn { db, subscriber }
    }

    /// A connection whose changes no cache in this process needs to hear of
    /// (tests, one-shot tools; other nodes still hear through NOTIFY).
    pub fn detached(db: &'c mut AnyConnection) -> Conn<'c> {
        Conn::new(db, None)
    }

    /// Runs `f` in one write transaction (`store::write_transaction`: on
    /// SQLite `BEGIN IMMEDIATE`). Committed: what it announced is applied to
    /// this node's cache. Rolled back: nothing happened, nothing is told.
    /// A transaction that announces a change but wrote no audit entry is
    /// rolled back: every change the other nodes hear of is in the log.
    pub fn write<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        let mut announced = Vec::new();
        let result = write_transaction(self.db, |db| {
            let mut tx = Tx {
                db,
                announced: Vec::new(),
                audited: false,
            };
            let value = f(&mut tx)?;
            if !tx.announced.is_empty() && !tx.audited {
                log::error!(
                    "rolled back: a transaction announced {:?} without an audit entry",
                    tx.announced
                );
                return Err(diesel::result::Error::RollbackTransaction.into());
            }
            announced = tx.announced;
            Ok(value)
        });
        if result.is_ok() {
            if let Some(subscriber) = &self.subscriber {
                for change in &announced {
                    subscriber(change);
                }
            }
        }
        result
    }
}

/// Both dereference to the connection, so the store's query functions
/// (which take `&mut AnyConnection`) accept either.
macro_rules! on_the_connection {
    ($($holder:ident),+) => {$(
        impl Deref for $holder<'_> {
            type Target = AnyConnection;
            fn deref(&self) -> &AnyConnection {
                self.db
            }
        }

        impl DerefMut for $holder<'_> {
            fn deref_mut(&mut self) -> &mut AnyConnection {
                self.db
            }
        }
    )+};
}

on_the_connection!(Conn, Tx);

/// Client ids per `Change::Clients` notification: ids are at most 64
/// characters, so 100 of them keep a payload well under 8000 bytes.
const CLIENTS_PER_NOTIFY: usize = 100;

/// An open write transaction. It dereferences to the connection for the
/// store's query functions; announcing and auditing are its own methods.
pub struct Tx<'t> {
    db: &'t mut AnyConnection,
    announced: Vec<Change>,
    audited: bool,
}

impl Tx<'_> {
    /// Tells every node of `change` when (and only if) this transaction
    /// commits.
    pub fn announce(&mut self, change: Change) -> QueryResult<()> {
        if let Change::Clients(ids) = &change {
            // NOTIFY payloads must stay under 8000 bytes.
            for chunk in ids.chunks(CLIENTS_PER_NOTIFY) {
                changes::publish(self.db, &Change::Clients(chunk.to_vec()).payload())?;
            }
        } else {
            changes::publish(self.db, &change.payload())?;
        }
        self.announced.push(change);
        Ok(())
    }

    /// Writes several entries to the audit log in one statement.
    pub fn audit_many(&mut self, entries: Vec<audit::Entry>) -> QueryResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        audit::insert_many(self.db, entries)?;
        self.audited = true;
        Ok(())
    }

    /// Writes `entry` to the audit log in this transaction.
    pub fn audit(&mut self, entry: audit::Entry) -> QueryResult<()> {
        audit::insert(self.db, entry)?;
        self.audited = true;
        Ok(())
    }

    /// Runs `statement`, which writes audit entries in the same statement as
    /// the change they record (`families::record_renewals`: one round trip
    /// for a whole batch), and returns its value; it says how many entries
    /// it wrote. Only the store writes such statements, so the audit log
    /// still has no other way in than a `Tx`.
    pub(super) fn audit_within<T>(
        &mut self,
        statement: impl FnOnce(&mut AnyConnection) -> QueryResult<(T, usize)>,
    ) -> QueryResult<T> {
        let (value, entries) = statement(self.db)?;
        if entries > 0 {
            self.audited = true;
        }
        Ok(value)
    }

    /// What this transaction announced so far.
    pub fn announced(&self) -> &[Change] {
        &self.announced
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use diesel::connection::SimpleConnection;

    use super::*;

    /// An in-memory store with the schema, and a scratch table `t`.
    fn sqlite() -> AnyConnection {
        let mut db = AnyConnection::Sqlite(
            diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite"),
        );
        super::super::migrate_and(&mut db, |_| Ok(())).expect("migrations");
        db.batch_execute("CREATE TABLE t (x INTEGER NOT NULL)")
            .expect("table");
        db
    }

    fn count(db: &mut AnyConnection, table: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<Count>(db)
            .expect("count")
            .n
    }

    fn entry(action: &str) -> audit::Entry {
        audit::Entry {
            id: format!("ev_{action}"),
            at: 0,
            actor: "test".into(),
            actor_tenant_path: "/tn_root/".into(),
            ip: None,
            action: action.into(),
            target: None,
            tenant_id: None,
            details: "{}".into(),
        }
    }

    fn recorder() -> (Arc<Mutex<Vec<Change>>>, Arc<Subscriber>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        let subscriber: Arc<Subscriber> = Arc::new(move |change: &Change| {
            sink.lock().expect("sink").push(change.clone());
        });
        (heard, subscriber)
    }

    #[test]
    fn a_committed_write_tells_the_node_what_it_announced_after_the_commit() {
        let mut db = sqlite();
        let (heard, subscriber) = recorder();
        let mut conn = Conn::new(&mut db, Some(subscriber));
        conn.write(|tx| {
            diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut **tx)?;
            tx.announce(Change::Client("kwc_1".into()))?;
            tx.announce(Change::Tenants)?;
            tx.audit(entry("one"))?;
            // Nothing is told before the commit.
            assert!(heard.lock().expect("heard").is_empty());
            assert_eq!(tx.announced().len(), 2);
            Ok::<_, diesel::result::Error>(())
        })
        .expect("write");
        assert_eq!(count(&mut conn, "t"), 1);
        assert_eq!(count(&mut conn, "audit_events"), 1);
        assert_eq!(
            *heard.lock().expect("heard"),
            vec![Change::Client("kwc_1".into()), Change::Tenants]
        );
    }

    #[test]
    fn a_rolled_back_write_changes_nothing_and_tells_nobody() {
        let mut db = sqlite();
        let (heard, subscriber) = recorder();
        let mut conn = Conn::new(&mut db, Some(subscriber));
        let outcome = conn.write(|tx| {
            diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut **tx)?;
            tx.announce(Change::Client("kwc_1".into()))?;
            tx.audit(entry("one"))?;
            Err::<(), _>(diesel::result::Error::NotFound)
        });
        assert!(outcome.is_err());
        assert_eq!(count(&mut conn, "t"), 0);
        assert_eq!(count(&mut conn, "audit_events"), 0);
        assert!(heard.lock().expect("heard").is_empty());
        // The next write starts clean: nothing of the rolled-back one leaks.
        conn.write(|tx| {
            tx.announce(Change::Keys)?;
            tx.audit(entry("two"))?;
            Ok::<_, diesel::result::Error>(())
        })
        .expect("write");
        assert_eq!(*heard.lock().expect("heard"), vec![Change::Keys]);
    }

    #[test]
    fn an_announced_change_without_an_audit_entry_is_not_committed() {
        let mut db = sqlite();
        let (heard, subscriber) = recorder();
        let mut conn = Conn::new(&mut db, Some(subscriber));
        let outcome = conn.write(|tx| {
            diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut **tx)?;
            tx.announce(Change::Client("kwc_1".into()))?;
            Ok::<_, diesel::result::Error>(())
        });
        assert!(outcome.is_err());
        assert_eq!(count(&mut conn, "t"), 0);
        assert!(heard.lock().expect("heard").is_empty());
    }
}

//! Access-token renewals on PostgreSQL, committed in batches.
//!
//! A renewal writes its family record and its audit entry and must have
//! committed both before it answers, so on PostgreSQL what it costs is a
//! commit (a WAL flush), whatever its statements: one commit per renewal
//! held renewal to about the rate of a one-statement insert per request.
//! Renewals that arrive together therefore share a commit. Each request
//! hands its renewal to one writer (a thread of its own) and waits for its
//! outcome; the writer takes everything pending, up to `BATCH_LIMIT`, records
//! it in one transaction of one statement (`families::record_renewals`), and
//! tells each request its own outcome. While one batch commits the next one
//! gathers, so batches grow with the load; nothing waits on a timer, so a
//! lone renewal goes out at once.
//!
//! Each renewal keeps its own outcome: one whose token was revoked is
//! refused, as it would be alone, and the others are recorded. Only a
//! failure of the transaction itself is shared: then every renewal of the
//! batch gets the error (503 for a store outage, as alone) and none of them
//! is recorded.
//!
//! Not batched, each in a transaction of its own as before:
//! - SQLite: it has one writer at a time anyway, and its commit does not
//!   wait for the disk (WAL with `synchronous = NORMAL`).
//! - A token whose tenant is not its client's: whether that tenant is still
//!   within the client's reach is read in the renewal's transaction
//!   (`credentials::check_grant_still_allowed`), which a batch does not do.
//! - API tokens (`credentials::renew_api_token`): each renewal makes a new
//!   `api_tokens` row, and they are renewed far less often.

use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use super::credentials::{self, check_audience_still_allowed, RenewalError};
use super::{audit, now, Actor, ServiceError};
use crate::directory::ClientEntry;
use crate::store::families::{self, Member, Renewal, KIND_ACCESS_TOKEN};
use crate::store::{audit::Entry, Backend, Db};
use crate::tokens::jwt::AccessClaims;

/// The most renewals one transaction records: a burst larger than this
/// commits in several, one after another. Its statement binds one array
/// element per renewal and column, so this also bounds its size.
pub const BATCH_LIMIT: usize = 128;

/// How many times a batch is run when PostgreSQL aborts it for a deadlock
/// with a concurrent revocation (see `families::RENEW_MANY_POSTGRES`) before
/// its renewals are answered 503.
const ATTEMPTS: u32 = 3;

/// The way renewals of access tokens are recorded (in `AppState`).
pub struct Renewals {
    db: Db,
    /// The writer's queue; None where renewals are not batched (SQLite).
    queue: Option<mpsc::Sender<Pending>>,
}

/// A renewal waiting for the writer, and where its outcome goes: recorded
/// (true), refused because its token was revoked (false), or the batch's
/// failure.
struct Pending {
    parent_id: String,
    parent_issued_at: i64,
    parent_expires_at: i64,
    client_id: String,
    child_id: String,
    child_expires_at: i64,
    entry: Entry,
    outcome: oneshot::Sender<Result<bool, ServiceError>>,
}

impl Renewals {
    /// On PostgreSQL, starts the writer; it stops when the last `Renewals`
    /// handle is dropped (the server's state).
    pub fn start(db: &Db) -> Renewals {
        let queue = match db.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let (queue, pending) = mpsc::channel();
                let writer = db.clone();
                let started = std::thread::Builder::new()
                    .name("keyward-renewals".into())
                    .spawn(move || write_batches(&writer, &pending));
                match started {
                    Ok(_) => Some(queue),
                    Err(e) => {
                        log::warn!("renewals: no writer thread ({e}); each renewal commits alone");
                        None
                    }
                }
            }
        };
        Renewals {
            db: db.clone(),
            queue,
        }
    }

    /// Records the renewal of the access token `old` as `renewed` (already
    /// signed), audited, as `credentials::renew_access_token` does, in the
    /// next batch where it can be batched. `client` is the client's current
    /// entry (the directory's).
    pub async fn renew_access_token(
        &self,
        actor: Actor,
        issuer: &str,
        client: Arc<ClientEntry>,
        old: Arc<AccessClaims>,
        renewed: AccessClaims,
    ) -> Result<(), RenewalError> {
        let queue = match &self.queue {
            Some(queue) if old.tenant == client.tenant_id() => queue,
            _ => {
                let issuer = issuer.to_string();
                return self
                    .db
                    .run(move |conn| {
                        credentials::renew_access_token(
                            conn, &actor, &issuer, &client, &old, &renewed,
                        )
                    })
                    .await;
            }
        };
        // The rest of `check_grant_still_allowed`: the tenant is the
        // client's own, so nothing is read.
        check_audience_still_allowed(issuer, client.audience(), &old.aud.to_vec())?;
        let entry = audit::entry(
            &actor,
            "token.renew",
            Some(&client.client_id),
            Some(client.tenant_id()),
            serde_json::json!({"token_kind": "access_token", "from_jti": old.jti, "jti": renewed.jti}),
        );
        let (outcome, answer) = oneshot::channel();
        let pending = Pending {
            parent_id: old.jti.clone(),
            parent_issued_at: old.iat,
            parent_expires_at: old.exp,
            client_id: old.client_id.clone(),
            child_id: renewed.jti,
            child_expires_at: renewed.exp,
            entry,
            outcome,
        };
        let writer_gone = || {
            RenewalError::Service(ServiceError::Internal(
                "the renewal writer has stopped".into(),
            ))
        };
        queue.send(pending).map_err(|_| writer_gone())?;
        match answer.await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(RenewalError::Inactive),
            Ok(Err(e)) => Err(RenewalError::Service(e)),
            // The writer dropped it: it panicked in the middle of a batch.
            Err(_) => Err(writer_gone()),
        }
    }
}

/// The writer: each batch is whatever came in while the previous one was
/// being committed (or the one renewal that woke it), up to `BATCH_LIMIT`.
fn write_batches(db: &Db, queue: &mpsc::Receiver<Pending>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_LIMIT {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        // A bug in one batch answers its renewals 500; the writer goes on.
        let recorded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| record_batch(db, &batch)))
                .unwrap_or_else(|_| {
                    Err(ServiceError::Internal(
                        "the renewal writer panicked while recording a batch".into(),
                    ))
                });
        match recorded {
            Ok(outcomes) => {
                for (pending, recorded) in batch.into_iter().zip(outcomes) {
                    // Its request may be gone (the caller hung up): the
                    // renewal stands, as it would have unbatched.
                    let _ = pending.outcome.send(Ok(recorded));
                }
            }
            Err(e) => {
                for pending in batch {
                    let _ = pending.outcome.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Records the batch in one transaction, run again when PostgreSQL aborted
/// it for a deadlock (nothing of it was written then).
fn record_batch(db: &Db, batch: &[Pending]) -> Result<Vec<bool>, ServiceError> {
    let renewals: Vec<Renewal<'_>> = batch
        .iter()
        .map(|p| Renewal {
            parent: Member {
                token_id: &p.parent_id,
                kind: KIND_ACCESS_TOKEN,
                client_id: &p.client_id,
                expires_at: p.parent_expires_at,
            },
            parent_issued_at: p.parent_issued_at,
            child_id: &p.child_id,
            child_expires_at: p.child_expires_at,
            entry: &p.entry,
        })
        .collect();
    let mut attempt = 1;
    loop {
        let result = db.run_here(|conn| {
            conn.write(|tx| {
                families::record_renewals(tx, &renewals, now()).map_err(ServiceError::from)
            })
        });
        match result {
            Err(ServiceError::Contended(cause)) if attempt < ATTEMPTS => {
                log::info!(
                    "renewals: a batch of {} was aborted ({cause}); running it again",
                    renewals.len()
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

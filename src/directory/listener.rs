//! The PostgreSQL change channel: a thread that LISTENs on its own session,
//! hands every change to the directory, and keeps the cache trusted only
//! while it hears its own heartbeat.
//!
//! The channel heartbeats every 500 ms: the node NOTIFYs itself through the
//! request pool and the listener must hear it, which proves both that the
//! store answers and that notifications from other sessions (other nodes'
//! changes) arrive. A connection that fails is seen at the next 2 ms poll;
//! one that hangs stops the beats, and the cache stops being trusted
//! `cache::HEARTBEAT_GRACE_MS` after the last one heard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Directory;
use crate::store::changes::{self, Change, Listening};
use crate::store::{Db, StoreError};

const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// How often the session is drained of notifications.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long to wait before connecting again after the channel was lost.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The listener's identity and its off switch.
pub struct Listener {
    /// The listener's `application_name`, unique per process start, so an
    /// operator can find (or a test can cut) this node's channel.
    name: String,
    stop: AtomicBool,
}

impl Default for Listener {
    fn default() -> Self {
        Listener::new()
    }
}

impl Listener {
    pub fn new() -> Listener {
        Listener {
            name: crate::tokens::opaque::random_id("keyward-listener-"),
            stop: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Follows the channel on a thread of its own until the directory's
/// listener is stopped. `url` is where the listener connects.
pub fn spawn(directory: Arc<Directory>, url: String, db: Db) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keyward-changes".into())
        .spawn(move || follow(&directory, &url, &db))
        .map(|_| ())
}

/// The listener loop: LISTEN, load the revoked jtis, then drain
/// notifications every 2 ms and heartbeat every 500 ms, so that a dead
/// connection is noticed at once and a hung or deaf one within the grace.
fn follow(directory: &Directory, url: &str, db: &Db) {
    let listener = &directory.listener;
    while !listener.stopping() {
        if let Err(e) = follow_once(directory, url, db) {
            log::warn!("change channel: {e}");
            // The pool's connections may have died the same way.
            db.suspect();
        }
        if directory.cache.go_dark() {
            // A stopping server closes its channel on purpose: not worth a warning.
            if listener.stopping() {
                log::info!("change channel closed: the server is stopping");
            } else {
                log::warn!(
                    "change channel lost: reading credentials from the database until it is back"
                );
            }
        }
        if !listener.stopping() {
            std::thread::sleep(RECONNECT_AFTER);
        }
    }
}

/// Sends this node's heartbeat through the request pool.
fn send_beat(db: &Db, name: &str, seq: u64) -> Result<(), String> {
    let payload = format!("beat:{name}:{seq}");
    db.run_here(|conn| changes::notify(conn, &payload).map_err(StoreError::from))
        .map_err(|e| e.to_string())
}

fn follow_once(directory: &Directory, url: &str, db: &Db) -> Result<(), String> {
    let listener = &directory.listener;
    let cache = &directory.cache;
    // Named, so operators (and tests) can tell the listener apart.
    let sep = if url.contains('?') { '&' } else { '?' };
    let named = format!("{url}{sep}application_name={}", listener.name);
    let (mut session, revoked) = Listening::open(&named, cache.now())?;
    cache.go_live(revoked);
    let own_beat = format!("beat:{}:", listener.name);
    let mut seq: u64 = 0;
    let mut announced = false;
    let mut last_sent: Option<Instant> = None;
    while !listener.stopping() {
        session.drain(|payload| {
            // Any beat of ours heard on this session was sent after its
            // LISTEN: delivery works.
            if payload.starts_with(&own_beat) {
                cache.beat();
                if !announced {
                    log::info!("change channel up: credential cache live");
                    announced = true;
                }
            } else if let Some(change) = Change::parse(payload) {
                directory.apply(&change);
            }
        })?;
        if last_sent.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
            seq += 1;
            if let Err(e) = send_beat(db, &listener.name, seq) {
                // The pool is down: no beat is heard and the cache goes
                // unused within the grace; the listener itself stays.
                log::debug!("heartbeat not sent: {e}");
            }
            last_sent = Some(Instant::now());
        }
        std::thread::sleep(POLL_EVERY);
    }
    Ok(())
}

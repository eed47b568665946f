//! The change channel: a thread that hears of every change committed to the
//! store, hands it to the directory, and keeps the cache trusted only while
//! it proves it hears.
//!
//! On PostgreSQL it LISTENs on its own session and proves itself with its
//! own heartbeat (below). On SQLite it follows the change log
//! (`store::changes::LogFollower`) every 5 ms on its own connection; each
//! poll that answers is its heartbeat, so a file that stops answering stops
//! the cache being trusted within the same grace.
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
use crate::store::changes::{self, Change, Listening, LogFollower};
use crate::store::{Db, StoreError};

const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// How often the session is drained of notifications.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long to wait before connecting again after the channel was lost.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// How often the SQLite change log is polled: a change another process
/// commits reaches the cache within this (plus the thread's wake-up).
const LOG_POLL_EVERY: Duration = Duration::from_millis(5);
/// A log follower that could not poll for this long (a lock held, a host
/// paused) starts over rather than trust that its cursor is still in the
/// log (rows are kept `changes::LOG_KEEP_SECS`).
const LOG_STALL_RESTART: Duration = Duration::from_secs(60);

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

/// Follows the PostgreSQL channel on a thread of its own until the
/// directory's listener is stopped. `url` is where the listener connects.
pub fn spawn(directory: Arc<Directory>, url: String, db: Db) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keyward-changes".into())
        .spawn(move || {
            follow(
                &directory,
                || follow_once(&directory, &url, &db),
                || db.suspect(),
            )
        })
        .map(|_| ())
}

/// Follows SQLite's change log on a thread of its own until the
/// directory's listener is stopped. `db` is the node's pool, whose failures
/// the follower watches (see `follow_log_once`).
pub fn spawn_log_follower(directory: Arc<Directory>, db: Db) -> std::io::Result<()> {
    let url = db.url().to_string();
    std::thread::Builder::new()
        .name("keyward-changes".into())
        .spawn(move || follow(&directory, || follow_log_once(&directory, &url, &db), || {}))
        .map(|_| ())
}

/// The channel's outer loop: follow until the channel fails, forget what
/// it kept fresh, wait, follow again. `lost` is told of each failure.
fn follow(directory: &Directory, follow_once: impl Fn() -> Result<(), String>, lost: impl Fn()) {
    let listener = &directory.listener;
    while !listener.stopping() {
        if let Err(e) = follow_once() {
            log::warn!("change channel: {e}");
            // The pool's connections may have died the same way.
            lost();
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

/// One PostgreSQL session: LISTEN, load the revoked jtis, then drain
/// notifications every 2 ms and heartbeat every 500 ms, so that a dead
/// connection is noticed at once and a hung or deaf one within the grace.
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

/// One SQLite connection: note the newest log row, load the revoked jtis,
/// then apply what the log gains every 5 ms. Each poll that answers is a
/// heartbeat.
///
/// When a request finds the store failing (`Db::suspect`), the follower
/// lets go of its connection too and opens a new one. SQLite shares one
/// view of the file among a process's connections: one opened while the
/// file was read-only (or its `-shm` could not be written) keeps every
/// later connection of the process read-only for as long as it stays open,
/// so a follower that held on would make the fault outlive its cause.
fn follow_log_once(directory: &Directory, url: &str, db: &Db) -> Result<(), String> {
    let listener = &directory.listener;
    let cache = &directory.cache;
    let suspicions = db.suspicions();
    let (mut follower, revoked) = LogFollower::open(url, cache.now())?;
    cache.go_live(revoked);
    let mut announced = false;
    let mut last_poll = Instant::now();
    while !listener.stopping() {
        if db.suspicions() != suspicions {
            return Err("a request found the store failing; reopening the change log".into());
        }
        if last_poll.elapsed() > LOG_STALL_RESTART {
            return Err(format!(
                "the change log went unread for {:?}; starting over",
                last_poll.elapsed()
            ));
        }
        follower.poll(|payload| {
            if let Some(change) = Change::parse(payload) {
                directory.apply(&change);
            }
        })?;
        last_poll = Instant::now();
        cache.beat();
        if !announced {
            log::info!("change log followed: credential cache live");
            announced = true;
        }
        std::thread::sleep(LOG_POLL_EVERY);
    }
    Ok(())
}

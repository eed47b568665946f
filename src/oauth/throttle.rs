//! Failed-authentication throttling (API.md section 2, after the token
//! errors): past `limit` failures from one source address in a fixed window,
//! every endpoint that authenticates a caller answers that address 429
//! `slow_down` until the window ends, before looking at its credentials.
//!
//! How it is meant to be called, from the one function that authenticates:
//! 1. `throttle.check(ip)?` first (`RetryAfter` converts into
//!    `OAuthError::slow_down`), before reading any credential;
//! 2. `throttle.record_failure(ip, reason)` whenever the answer is a 401
//!    (or a console sign-in fails). Nothing else counts. It also counts
//!    `keyward_auth_failures_total{reason}`, so it replaces the increment
//!    `Authenticator::authenticate` makes today (else failures count twice).
//!
//! A source is an IPv4 address, an IPv6 /64 (one host usually holds a whole
//! /64 and could otherwise rotate through it), or "unknown" (no address, or a
//! trusted proxy's unreadable `X-Forwarded-For`): unknown callers share one
//! budget, as clients behind one address do.
//!
//! Cost: `check` reads one atomic while no source is throttled (no lock, no
//! clock, no allocation), and the clock too once every throttled window has
//! ended; only while some window is throttled does it lock one of `SHARDS`
//! maps. A failure locks one shard.
//!
//! Memory is bounded: at most `capacity` sources are tracked (about 50 bytes
//! each, 5 MB at the default). A source is added by its first failure; when
//! its shard is full, expired windows are dropped first, then the oldest
//! eighth of the shard. What an attacker who controls many addresses (or
//! /64s) can do by filling the table: evict older windows, so that throttled
//! sources (its own or others') start afresh before their window ends. That
//! buys it nothing it did not already have: with N sources it had N times
//! the budget anyway, and to evict anything it must first fail `capacity`
//! times from fresh sources. It cannot grow memory past the cap, cannot get
//! another address throttled (failures count only against the source that
//! made them), and cannot slow `check` for anyone beyond one shard lock.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use super::authenticate::FailureReason;

/// Sources tracked at most, over all shards.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Independent maps, so that concurrent failures rarely wait on each other.
const SHARDS: usize = 16;

/// The source is throttled: answer 429 with `Retry-After: seconds()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(u64);

impl RetryAfter {
    /// Whole seconds left in the window, rounded up (never 0: "retry now"
    /// would be wrong while the window lasts).
    fn until(end: Instant, now: Instant) -> RetryAfter {
        let left = end.saturating_duration_since(now);
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        RetryAfter(seconds.max(1))
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

/// Whose failures count together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Unknown,
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl Source {
    fn of(ip: Option<IpAddr>) -> Source {
        // IPv4-mapped IPv6 (::ffff:a.b.c.d) is that IPv4 address, not one
        // /64 shared by every IPv4 caller.
        match ip.map(|ip| ip.to_canonical()) {
            None => Source::Unknown,
            Some(IpAddr::V4(v4)) => Source::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed authentications per source in fixed windows.
pub struct FailureThrottle {
    /// Failures allowed per window; 0 turns throttling off.
    limit: u32,
    window: Duration,
    shard_capacity: usize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<Source, Window>>]>,
    /// Windows at or past the limit (some perhaps expired, not yet dropped).
    /// While it is 0, `check` needs neither a lock nor the clock.
    throttled: AtomicUsize,
    /// When the last throttled window ends, in ms since `epoch` (rounded
    /// up): past it, `check` needs no lock.
    throttled_until_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for FailureThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureThrottle")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl FailureThrottle {
    /// `limit` failures per `window` (0: never throttle), tracking at most
    /// `DEFAULT_CAPACITY` sources.
    pub fn new(limit: u32, window: Duration) -> FailureThrottle {
        FailureThrottle::with_capacity(limit, window, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(limit: u32, window: Duration, capacity: usize) -> FailureThrottle {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        FailureThrottle {
            limit,
            window,
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards,
            throttled: AtomicUsize::new(0),
            throttled_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn from_settings(settings: &crate::config::Settings) -> FailureThrottle {
        FailureThrottle::new(
            settings.auth_failure_limit,
            Duration::from_secs(settings.auth_failure_window),
        )
    }

    /// Whether `ip` may try to authenticate now. Call it before looking at
    /// the credentials.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        if self.throttled.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.check_at(ip, Instant::now())
    }

    /// `check` at a given time (tests).
    pub fn check_at(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), RetryAfter> {
        if self.limit == 0 || self.throttled.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        // Truncated `now` against a rounded-up end: never early.
        let now_ms = now.saturating_duration_since(self.epoch).as_millis();
        if now_ms >= u128::from(self.throttled_until_ms.load(Ordering::Acquire)) {
            return Ok(());
        }
        let source = Source::of(ip);
        let shard = self.shard(source);
        match shard.get(&source) {
            Some(window) if window.failures >= self.limit => {
                let end = window.started + self.window;
                if now < end {
                    Err(RetryAfter::until(end, now))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication (a 401, or a failed console sign-in)
    /// against `ip`, and in `keyward_auth_failures_total{reason}`.
    pub fn record_failure(&self, ip: Option<IpAddr>, reason: FailureReason) {
        self.record_failure_at(ip, reason, Instant::now());
    }

    /// `record_failure` at a given time (tests).
    pub fn record_failure_at(&self, ip: Option<IpAddr>, reason: FailureReason, now: Instant) {
        crate::metrics::AUTH_FAILURES
            .with_label_values(&[reason.as_str()])
            .inc();
        if self.limit == 0 {
            return;
        }
        let source = Source::of(ip);
        let mut shard = self.shard(source);
        if let Some(window) = shard.get_mut(&source) {
            let was_throttled = window.failures >= self.limit;
            if now >= window.started + self.window {
                // A fixed window: the first failure after it starts the next.
                *window = Window {
                    started: now,
                    failures: 1,
                };
            } else {
                window.failures = window.failures.saturating_add(1);
            }
            let is_throttled = window.failures >= self.limit;
            match (was_throttled, is_throttled) {
                (false, true) => self.now_throttled(window.started),
                (true, false) => {
                    self.throttled.fetch_sub(1, Ordering::AcqRel);
                }
                _ => {}
            }
            return;
        }
        if shard.len() >= self.shard_capacity {
            self.make_room(&mut shard, now);
        }
        shard.insert(
            source,
            Window {
                started: now,
                failures: 1,
            },
        );
        if self.limit == 1 {
            self.now_throttled(now);
        }
    }

    /// A window that started at `started` reached the limit.
    fn now_throttled(&self, started: Instant) {
        let end = (started + self.window).saturating_duration_since(self.epoch);
        let end_ms = u64::try_from(end.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self.throttled_until_ms.fetch_max(end_ms, Ordering::AcqRel);
        self.throttled.fetch_add(1, Ordering::AcqRel);
    }

    /// Sources tracked right now (all shards).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn shard(&self, source: Source) -> MutexGuard<'_, HashMap<Source, Window>> {
        let index = (self.hasher.hash_one(source) % SHARDS as u64) as usize;
        // A panic while holding the lock cannot leave a window half-written
        // in a way that matters: go on with the map as it is.
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops expired windows; if the shard is still nearly full, drops its
    /// oldest eighth too (a batch, so that a flood pays for the scan once
    /// per many insertions rather than at each).
    fn make_room(&self, shard: &mut HashMap<Source, Window>, now: Instant) {
        let limit = self.limit;
        let window = self.window;
        let mut released = 0;
        shard.retain(|_, w| {
            let live = now < w.started + window;
            if !live && w.failures >= limit {
                released += 1;
            }
            live
        });
        let target = self.shard_capacity - self.shard_capacity / 8;
        if shard.len() >= target {
            let excess = shard.len() - target + 1;
            let mut starts: Vec<Instant> = shard.values().map(|w| w.started).collect();
            let (_, threshold, _) = starts.select_nth_unstable(excess - 1);
            let threshold = *threshold;
            let below = starts.iter().filter(|s| **s < threshold).count();
            // Ties at the threshold: drop only as many as needed.
            let mut ties = excess - below;
            shard.retain(|_, w| {
                let drop = w.started < threshold || (w.started == threshold && ties > 0);
                if w.started == threshold && drop {
                    ties -= 1;
                }
                if drop && w.failures >= limit {
                    released += 1;
                }
                !drop
            });
        }
        if released > 0 {
            self.throttled.fetch_sub(released, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const OTHER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn fail(throttle: &FailureThrottle, ip: Option<IpAddr>, times: u32, at: Instant) {
        for _ in 0..times {
            throttle.record_failure_at(ip, FailureReason::BadSecret, at);
        }
    }

    #[test]
    fn the_limit_reached_throttles_the_address_for_the_rest_of_its_window() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, SOME, 2, t0);
        assert_eq!(throttle.check_at(SOME, t0), Ok(()), "under the limit");
        fail(&throttle, SOME, 1, t0 + Duration::from_secs(5));
        assert_eq!(
            throttle.check_at(SOME, t0 + Duration::from_secs(10)),
            Err(RetryAfter(50))
        );
        // Part of a second left rounds up; the last instant still waits 1 s.
        assert_eq!(
            throttle.check_at(SOME, t0 + Duration::from_millis(10_500)),
            Err(RetryAfter(50))
        );
        assert_eq!(
            throttle.check_at(SOME, t0 + Duration::from_millis(59_999)),
            Err(RetryAfter(1))
        );
        assert_eq!(
            throttle.check(SOME).map_err(|r| r.seconds() <= 60),
            Err(true)
        );
    }

    #[test]
    fn another_address_is_never_throttled_by_these_failures() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, SOME, 10, t0);
        assert!(throttle.check_at(SOME, t0).is_err());
        assert_eq!(throttle.check_at(OTHER, t0), Ok(()));
        assert_eq!(throttle.check_at(None, t0), Ok(()));
    }

    #[test]
    fn the_end_of_the_window_resets_the_count() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, SOME, 3, t0);
        assert!(throttle
            .check_at(SOME, t0 + Duration::from_secs(59))
            .is_err());
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(throttle.check_at(SOME, t1), Ok(()));
        // The next failure opens a new window and counts from one.
        fail(&throttle, SOME, 2, t1);
        assert_eq!(throttle.check_at(SOME, t1), Ok(()));
        assert_eq!(throttle.throttled.load(Ordering::Acquire), 0);
        fail(&throttle, SOME, 1, t1 + Duration::from_secs(1));
        assert_eq!(
            throttle.check_at(SOME, t1 + Duration::from_secs(1)),
            Err(RetryAfter(59))
        );
    }

    #[test]
    fn without_failures_check_answers_from_one_atomic() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, SOME, 2, t0);
        assert_eq!(throttle.throttled.load(Ordering::Acquire), 0);
        fail(&throttle, SOME, 1, t0);
        assert_eq!(throttle.throttled.load(Ordering::Acquire), 1);
    }

    #[test]
    fn once_every_throttled_window_has_ended_check_takes_no_lock() {
        let throttle = std::sync::Arc::new(FailureThrottle::new(1, Duration::from_secs(60)));
        let t0 = Instant::now();
        fail(&throttle, SOME, 1, t0);
        let guards: Vec<_> = throttle.shards.iter().map(|s| s.lock().unwrap()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let checker = throttle.clone();
        std::thread::spawn(move || {
            // (The end is kept in whole milliseconds, rounded up.)
            let _ = tx.send(checker.check_at(SOME, t0 + Duration::from_millis(60_002)));
        });
        let answer = rx.recv_timeout(Duration::from_secs(5));
        drop(guards);
        assert_eq!(answer, Ok(Ok(())), "answered without waiting for a shard");
    }

    #[test]
    fn a_limit_of_zero_turns_throttling_off() {
        let throttle = FailureThrottle::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, SOME, 1_000, t0);
        assert_eq!(throttle.check_at(SOME, t0), Ok(()));
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn an_ipv6_host_cannot_escape_by_rotating_through_its_64() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for address in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            fail(&throttle, ip(address), 1, t0);
        }
        assert!(throttle.check_at(ip("2001:db8:1:2:abcd::1"), t0).is_err());
        assert_eq!(throttle.check_at(ip("2001:db8:1:3::1"), t0), Ok(()));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_its_ipv4_address() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, ip("::ffff:192.0.2.1"), 1, t0);
        fail(&throttle, SOME, 1, t0);
        assert!(throttle.check_at(SOME, t0).is_err());
        assert_eq!(throttle.check_at(ip("::ffff:192.0.2.2"), t0), Ok(()));
    }

    #[test]
    fn unknown_addresses_share_one_budget() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        fail(&throttle, None, 2, t0);
        assert!(throttle.check_at(None, t0).is_err());
        assert_eq!(throttle.check_at(SOME, t0), Ok(()));
    }

    #[test]
    fn a_flood_of_random_addresses_stays_within_the_cap() {
        let capacity = 1_000;
        let throttle = FailureThrottle::with_capacity(5, Duration::from_secs(60), capacity);
        let t0 = Instant::now();
        // All live windows (no time passes), so only eviction can make room.
        for i in 0..50_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            throttle.record_failure_at(Some(address), FailureReason::UnknownClient, t0);
            assert!(throttle.tracked() <= capacity + SHARDS, "at {i}");
        }
        // And with time passing, expired windows make the room.
        for i in 0..50_000u32 {
            let address = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) << 64));
            let at = t0 + Duration::from_secs(u64::from(i) / 100);
            throttle.record_failure_at(Some(address), FailureReason::UnknownClient, at);
        }
        assert!(throttle.tracked() <= capacity + SHARDS);
    }

    #[test]
    fn eviction_drops_the_oldest_windows_and_keeps_the_count_of_throttled_ones_right() {
        let throttle = FailureThrottle::with_capacity(1, Duration::from_secs(600), SHARDS * 8);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(i));
            throttle.record_failure_at(
                Some(address),
                FailureReason::BadToken,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        // With a limit of 1 every tracked source is throttled.
        assert_eq!(
            throttle.throttled.load(Ordering::Acquire),
            throttle.tracked()
        );
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(9_999u32));
        assert!(throttle
            .check_at(Some(newest), t0 + Duration::from_secs(10))
            .is_err());
        let oldest = IpAddr::V4(std::net::Ipv4Addr::from(0u32));
        assert_eq!(
            throttle.check_at(Some(oldest), t0 + Duration::from_secs(10)),
            Ok(())
        );
    }
}

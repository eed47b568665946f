//! Where the credential directory takes the time from: the system clock in
//! production, a clock a test moves by hand (so that a test of an expiry or a
//! grace moves time instead of sleeping through it).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock time, in Unix milliseconds and seconds. The directory compares
/// it with stored timestamps (expiry, grace), so it is wall-clock time, not a
/// monotonic `Instant`.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Unix seconds, the unit of every timestamp in the store and in tokens.
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// The default for a server: the system's clock.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is moved (tests). Shared through an
/// `Arc`, so a test keeps a handle on the clock it gave the server.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    pub fn at_ms(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            ms: AtomicI64::new(ms),
        })
    }

    /// Standing at the system's time of its creation.
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::at_ms(SystemClock.now_ms())
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        // fetch_update never fails with a closure that always answers Some.
        let _ = self
            .ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ms| {
                Some(ms.saturating_add(by))
            });
    }

    pub fn set_ms(&self, ms: i64) {
        self.ms.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_ms(1_999);
        assert_eq!((clock.now_ms(), clock.now()), (1_999, 1));
        clock.advance(Duration::from_millis(1));
        assert_eq!((clock.now_ms(), clock.now()), (2_000, 2));
        clock.set_ms(-1);
        assert_eq!(clock.now(), -1, "seconds round down, also before 1970");
    }

    #[test]
    fn the_system_clock_agrees_with_chrono() {
        let before = chrono::Utc::now().timestamp_millis();
        let now = SystemClock.now_ms();
        assert!(now >= before && now - before < 1_000);
    }
}

//! The one clock: wall-clock Unix seconds. Everything that stamps or compares a time reads
//! it here — the system's clock in service, a clock set by hand in tests, so a test moves
//! time on instead of sleeping until it passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The system's clock, or a clock set by hand (`manual`), shared by every clone.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands at `start` until it is set or moved on.
    pub fn manual(start: i64) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start))))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        match &self.0 {
            Some(manual) => manual.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// `now` as an unsigned number (times before 1970 read as 0).
    pub fn now_u64(&self) -> u64 {
        self.now().max(0) as u64
    }

    /// Moves a manual clock on by `seconds` (the system's clock cannot be moved).
    pub fn advance(&self, seconds: i64) {
        if let Some(manual) = &self.0 {
            manual.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock to `at`.
    pub fn set(&self, at: i64) {
        if let Some(manual) = &self.0 {
            manual.store(at, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(100);
        let shared = clock.clone();
        clock.advance(30);
        assert_eq!(shared.now(), 130);
        shared.set(7);
        assert_eq!(clock.now(), 7);
        assert!(Clock::system().now() > 1_700_000_000);
    }
}

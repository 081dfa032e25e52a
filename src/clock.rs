//! The one clock: wall-clock Unix seconds. Everything that stamps or compares a time reads
//! it here. In service it is the system's clock; a test uses an adjustable one, which runs
//! with the system's but can be moved on, so a test moves time instead of sleeping until it
//! passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The system's clock, or one moved by an offset (`adjustable`), shared by every clone.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that runs with the system's until `advance` or `set` moves it.
    pub fn adjustable() -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(0))))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        system_now()
            + self
                .0
                .as_ref()
                .map_or(0, |offset| offset.load(Ordering::SeqCst))
    }

    /// `now` as an unsigned number (times before 1970 read as 0).
    pub fn now_u64(&self) -> u64 {
        self.now().max(0) as u64
    }

    /// Moves an adjustable clock on by `seconds` (the system's clock cannot be moved).
    pub fn advance(&self, seconds: i64) {
        if let Some(offset) = &self.0 {
            offset.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// Sets an adjustable clock so that it reads `at` now.
    pub fn set(&self, at: i64) {
        if let Some(offset) = &self.0 {
            offset.store(at - system_now(), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_on_when_told_and_clones_share_it() {
        let clock = Clock::adjustable();
        let shared = clock.clone();
        let before = clock.now();
        clock.advance(3600);
        assert!(shared.now() >= before + 3600);
        shared.set(7);
        assert!((7..=9).contains(&clock.now()));
        let system = Clock::system();
        system.advance(3600);
        assert!(
            system.now() < before + 3600,
            "the system's clock does not move"
        );
    }
}

//! The Lamport clock every Celery node keeps (kombu's `LamportClock`).
//!
//! Events carry it as `clock`, and monitors order a task's events by
//! `(clock, timestamp)`: wall clocks of two hosts disagree, a logical clock
//! cannot. Each event moves it forward by one; each remote-control message
//! seen carries the sender's clock and pulls ours past it (`adjust`), so
//! whatever a worker does after a command is ordered after that command.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct LamportClock {
    value: AtomicU64,
}

impl LamportClock {
    /// The current value.
    pub fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// One local event: the clock moves on by one, and this is its new value.
    pub fn forward(&self) -> u64 {
        self.value.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }

    /// A message stamped `seen` arrived: the clock becomes `max(own, seen) + 1`.
    pub fn adjust(&self, seen: u64) -> u64 {
        let mut own = self.value.load(Ordering::Relaxed);
        loop {
            let next = own.max(seen).saturating_add(1);
            match self
                .value
                .compare_exchange_weak(own, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(current) => own = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_counts_and_adjust_jumps_past_what_was_seen() {
        let clock = LamportClock::default();
        assert_eq!(clock.forward(), 1);
        assert_eq!(clock.forward(), 2);
        assert_eq!(clock.adjust(10), 11);
        // An older stamp still moves the clock, by one.
        assert_eq!(clock.adjust(3), 12);
        assert_eq!(clock.adjust(u64::MAX), u64::MAX);
        assert_eq!(clock.forward(), u64::MAX);
    }
}

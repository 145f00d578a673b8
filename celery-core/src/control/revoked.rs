//! The revoked task ids a worker remembers: Celery's `worker_state.revoked`,
//! a `LimitedSet(maxlen=50000, expires=10800)`.
//!
//! A revoke is a broadcast, not a message in the task's queue: the worker
//! that later receives the task must already know. So every worker keeps
//! the ids, checks them when a task arrives and again just before it runs,
//! and hands them to workers that start later (mingle's `hello`). Bounded
//! both ways, as Celery's: at most [`MAX_REVOKED`] ids (the oldest go first)
//! and none older than [`REVOKE_EXPIRES`], so a flood of revokes cannot grow
//! a worker without limit.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

/// Celery's `CELERY_WORKER_REVOKES_MAX`.
pub const MAX_REVOKED: usize = 50_000;
/// Celery's `CELERY_WORKER_REVOKE_EXPIRES`: three hours.
pub const REVOKE_EXPIRES: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug)]
pub struct RevokedSet {
    /// id → when it was (last) revoked here, and that revoke's serial.
    added: HashMap<String, Revoke>,
    /// The same ids, oldest first. An id revoked twice appears twice; the
    /// stale entry (an older serial) is skipped when it reaches the front.
    order: VecDeque<(Revoke, String)>,
    next_serial: u64,
    max: usize,
    expires: Duration,
}

/// One revoke: when, and which (two revokes can share an instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Revoke {
    at: Instant,
    serial: u64,
}

impl Default for RevokedSet {
    fn default() -> Self {
        RevokedSet::new(MAX_REVOKED, REVOKE_EXPIRES)
    }
}

impl RevokedSet {
    pub fn new(max: usize, expires: Duration) -> RevokedSet {
        RevokedSet {
            added: HashMap::new(),
            order: VecDeque::new(),
            next_serial: 0,
            max: max.max(1),
            expires,
        }
    }

    /// Remembers `id` as revoked at `now`.
    pub fn add(&mut self, id: &str, now: Instant) {
        let revoke = Revoke {
            at: now,
            serial: self.next_serial,
        };
        self.next_serial = self.next_serial.wrapping_add(1);
        self.added.insert(id.to_owned(), revoke);
        self.order.push_back((revoke, id.to_owned()));
        self.purge(now);
    }

    pub fn contains(&self, id: &str, now: Instant) -> bool {
        self.added
            .get(id)
            .is_some_and(|revoke| now.saturating_duration_since(revoke.at) < self.expires)
    }

    /// The ids still remembered, oldest first (what mingle hands on: a
    /// receiver whose set is full drops the oldest first).
    pub fn ids(&mut self, now: Instant) -> Vec<String> {
        self.purge(now);
        self.order
            .iter()
            .filter(|(revoke, id)| self.added.get(id) == Some(revoke))
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.added.len()
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// Drops expired ids, then the oldest ones beyond the limit.
    fn purge(&mut self, now: Instant) {
        while let Some((revoke, id)) = self.order.front() {
            let current = self.added.get(id) == Some(revoke);
            let expired = now.saturating_duration_since(revoke.at) >= self.expires;
            if current && !expired && self.added.len() <= self.max {
                break;
            }
            if current {
                self.added.remove(id);
            }
            self.order.pop_front();
        }
        // Ids revoked again and again leave stale entries behind the front:
        // sweep them once they outnumber the live ones.
        if self.order.len() > self.max.saturating_mul(2) {
            let added = &self.added;
            self.order
                .retain(|(revoke, id)| added.get(id) == Some(revoke));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kept_until_they_expire() {
        let start = Instant::now();
        let mut revoked = RevokedSet::new(10, Duration::from_secs(60));
        revoked.add("a", start);
        assert!(revoked.contains("a", start + Duration::from_secs(59)));
        assert!(!revoked.contains("a", start + Duration::from_secs(60)));
        assert!(!revoked.contains("b", start));
        revoked.add("b", start + Duration::from_secs(61));
        assert_eq!(revoked.ids(start + Duration::from_secs(61)), ["b"]);
    }

    #[test]
    fn the_oldest_go_first_when_full() {
        let start = Instant::now();
        let mut revoked = RevokedSet::new(3, Duration::from_secs(60));
        for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            revoked.add(id, start + Duration::from_millis(n as u64));
        }
        assert_eq!(revoked.len(), 3);
        assert!(!revoked.contains("a", start));
        assert_eq!(revoked.ids(start), ["b", "c", "d"]);
    }

    #[test]
    fn revoking_again_renews_an_id() {
        let start = Instant::now();
        let mut revoked = RevokedSet::new(2, Duration::from_secs(60));
        revoked.add("a", start);
        revoked.add("b", start + Duration::from_secs(1));
        revoked.add("a", start + Duration::from_secs(2));
        revoked.add("c", start + Duration::from_secs(3));
        // "b" is now the oldest, so it went.
        assert_eq!(revoked.ids(start + Duration::from_secs(3)), ["a", "c"]);
        assert!(revoked.contains("a", start + Duration::from_secs(61)));
    }

    #[test]
    fn the_bound_holds_under_a_flood() {
        let start = Instant::now();
        let mut revoked = RevokedSet::default();
        for n in 0..(MAX_REVOKED + 1000) {
            revoked.add(&n.to_string(), start);
        }
        assert_eq!(revoked.len(), MAX_REVOKED);
        assert!(revoked.order.len() <= MAX_REVOKED);
        for _ in 0..(3 * MAX_REVOKED) {
            revoked.add("again", start);
        }
        assert!(revoked.order.len() <= 2 * MAX_REVOKED + 1);
    }
}

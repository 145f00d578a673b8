//! Which finished deliveries one `multiple` ack may cover: pure bookkeeping
//! of delivery tags, with the time passed in, so it is tested without a
//! broker.
//!
//! RabbitMQ numbers a channel's deliveries 1, 2, 3, … An ack with
//! `multiple = true` and tag `n` acks *every* unacked delivery up to `n`. That
//! is one frame for a whole batch of finished tasks — and a lost task if any
//! tag below `n` is still running (or held for its ETA). So the tracker keeps
//! the lowest tag not yet settled, `next`, and only acks the run of settled
//! tags that starts there:
//!
//! ```text
//! tags        1 2 3 4 5 6
//! finished    x x   x x
//! running         ^
//! ack         Through(2)         4 and 5 wait behind 3 …
//!             One(4), One(5)     … for at most STRAGGLER_WAIT, then alone
//! ```
//!
//! A delivery settled on its own (rejected, requeued, or acked alone) is
//! skipped over by the run: a later `multiple` ack covering its tag acks
//! nothing more, since it is no longer outstanding.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

/// How long a finished task may wait behind an unfinished lower tag before
/// it is acked on its own.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(50);

/// An ack to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// `multiple = true` with this tag: everything up to it.
    Through(u64),
    /// This tag alone.
    One(u64),
}

/// The settled state of one channel's delivery tags.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// The lowest tag not yet acked or settled; 0 until the first settlement
    /// (tags start at 1 on each channel).
    next: u64,
    /// Finished, not yet acked: tag → when it finished.
    finished: BTreeMap<u64, Instant>,
    /// At or above `next`, settled already (rejected, or acked on its own).
    settled_alone: BTreeSet<u64>,
}

impl AckTracker {
    /// The task of `tag` finished at `now`: it may be acked.
    pub fn finished(&mut self, tag: u64, now: Instant) {
        self.start();
        if tag >= self.next {
            self.finished.insert(tag, now);
        }
    }

    /// `tag` was settled on its own (rejected or requeued).
    pub fn settled_alone(&mut self, tag: u64) {
        self.start();
        if tag >= self.next {
            self.settled_alone.insert(tag);
        }
    }

    /// Finished tasks waiting for their ack.
    pub fn waiting(&self) -> usize {
        self.finished.len()
    }

    /// The acks due at `now`: one `multiple` ack for the run of settled tags
    /// from `next`, and, with `stragglers`, each finished task that waited
    /// [`STRAGGLER_WAIT`] behind a gap.
    pub fn flush(&mut self, now: Instant, stragglers: bool) -> Vec<Ack> {
        let mut acks = Vec::new();
        if self.next == 0 {
            return acks;
        }
        let mut last_finished = None;
        loop {
            if self.finished.remove(&self.next).is_some() {
                last_finished = Some(self.next);
            } else if !self.settled_alone.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        if let Some(tag) = last_finished {
            acks.push(Ack::Through(tag));
        }
        if stragglers {
            let due: Vec<u64> = self
                .finished
                .iter()
                .filter(|(_, since)| now.saturating_duration_since(**since) >= STRAGGLER_WAIT)
                .map(|(tag, _)| *tag)
                .collect();
            for tag in due {
                self.finished.remove(&tag);
                self.settled_alone.insert(tag);
                acks.push(Ack::One(tag));
            }
        }
        acks
    }

    fn start(&mut self) {
        if self.next == 0 {
            self.next = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_run_of_finished_tasks_is_one_multiple_ack() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        for tag in [3, 1, 2] {
            tracker.finished(tag, t0);
        }
        assert_eq!(tracker.flush(t0, true), [Ack::Through(3)]);
        assert_eq!(tracker.flush(at(t0, 100), true), []);
    }

    #[test]
    fn a_running_task_stops_the_run_until_it_finishes() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        tracker.finished(1, t0);
        tracker.finished(2, t0);
        tracker.finished(4, t0); // 3 still runs
        assert_eq!(tracker.flush(t0, false), [Ack::Through(2)]);
        tracker.finished(3, at(t0, 10));
        assert_eq!(tracker.flush(at(t0, 10), false), [Ack::Through(4)]);
    }

    #[test]
    fn stragglers_behind_a_gap_are_acked_alone_after_a_wait() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        tracker.finished(2, t0); // 1 is held for its ETA
        tracker.finished(3, t0);
        assert_eq!(tracker.flush(at(t0, 10), true), [], "too soon");
        assert_eq!(tracker.flush(at(t0, 60), true), [Ack::One(2), Ack::One(3)]);
        // When 1 finishes, one multiple ack with tag 1 covers only 1.
        tracker.finished(1, at(t0, 500));
        assert_eq!(tracker.flush(at(t0, 500), true), [Ack::Through(1)]);
        tracker.finished(4, at(t0, 500));
        assert_eq!(tracker.flush(at(t0, 500), true), [Ack::Through(4)]);
    }

    #[test]
    fn rejected_tags_are_skipped_over_by_the_run() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        tracker.finished(1, t0);
        tracker.settled_alone(2);
        tracker.finished(3, t0);
        assert_eq!(tracker.flush(t0, false), [Ack::Through(3)]);
    }

    /// The bug of an earlier version: with nothing finished, settled tags
    /// did not move `next`, and the next finished task waited as a
    /// straggler instead of being acked at once.
    #[test]
    fn rejected_tags_alone_still_move_the_run_on() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        tracker.settled_alone(1);
        tracker.settled_alone(2);
        assert_eq!(tracker.flush(t0, false), []);
        tracker.finished(3, t0);
        assert_eq!(tracker.flush(t0, false), [Ack::Through(3)]);
    }

    #[test]
    fn nothing_settled_means_no_ack() {
        let (mut tracker, t0) = (AckTracker::default(), Instant::now());
        assert_eq!(tracker.flush(t0, true), []);
        assert_eq!(tracker.waiting(), 0);
    }
}

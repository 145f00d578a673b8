//! Leader election for beat: only the holder of a lease in Redis sends.
//!
//! Celery's own beat has no such thing ("only one beat may run per schedule,
//! or tasks get sent twice"). Here any number of beats may run; one leads,
//! the others stand by and take over when it dies.
//!
//! This module is the *decision* half, a pure state machine with injected
//! time: it says when to try to acquire or renew, what an answer means, and
//! whether sending is allowed right now. [`super::redis_lease`] runs the
//! Redis commands it asks for. The protocol:
//!
//! * **acquire**: `SET key <our id> NX PX ttl`. Won → leader. Lost → read
//!   `PTTL` and try again right when the key would expire (or after ttl/2 at
//!   the latest), so a standby takes over at most one lease period (plus a few
//!   milliseconds) after the leader's last renewal — that is, within one
//!   lease period of its death.
//! * **renew** every ttl/3: a Lua compare-and-`PEXPIRE` (only if the value is
//!   still ours). Two renewals may fail before the lease is in danger.
//! * **release** on shutdown: compare-and-`DEL`, so a standby need not wait.
//! * **fencing**: the leader measures its lease from the moment it *sent*
//!   the acquire/renew (the key cannot expire in Redis earlier than that plus
//!   ttl) and stops sending at [`SAFETY`] of the ttl before that, even if it
//!   cannot reach Redis to learn it lost. A paused or partitioned leader thus
//!   goes quiet before any standby can acquire the expired key.

use std::time::{Duration, Instant};

/// The fraction of the ttl a leader may use before it must stop sending
/// without a renewal: the rest is margin for clock-rate differences between
/// this host and Redis and for a send already under way.
pub const SAFETY: f64 = 0.8;

/// A standby retries at least this often (as a fraction of the ttl) even if
/// the key's remaining time says later, in case the leader released it.
const STANDBY_POLL: f64 = 0.5;

/// Added to the key's remaining time before retrying, so the retry lands
/// after Redis has expired it.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);

/// What the machine wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Acquire,
    Renew,
}

/// The answer to an acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    Won,
    /// Another beat holds it; its remaining time, if Redis said.
    Held {
        remaining: Option<Duration>,
    },
    /// Redis could not be asked.
    Failed,
}

/// The answer to a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    Yes,
    /// The key is gone or someone else's: we are no longer the leader.
    Lost,
    Failed,
}

/// A leadership change, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    BecameLeader,
    /// Another beat holds the lease now (our key expired or was taken).
    LostToAnother,
    /// We could not renew before our lease ran out: stop sending.
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Standby {
        next_attempt: Instant,
    },
    Leader {
        valid_until: Instant,
        renew_at: Instant,
    },
}

/// The lease, as this beat sees it.
#[derive(Debug, Clone)]
pub struct Lease {
    ttl: Duration,
    role: Role,
}

impl Lease {
    /// A standby that will try to acquire at once.
    pub fn new(ttl: Duration, now: Instant) -> Lease {
        Lease {
            ttl,
            role: Role::Standby { next_attempt: now },
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// Whether this beat may send at `now` (the fence).
    pub fn may_send(&self, now: Instant) -> bool {
        matches!(self.role, Role::Leader { valid_until, .. } if now < valid_until)
    }

    /// Until when this beat may send (the fence), if it leads. A send still
    /// under way then is abandoned: it may not finish after a standby could
    /// have taken over.
    pub fn sends_until(&self) -> Option<Instant> {
        match self.role {
            Role::Leader { valid_until, .. } => Some(valid_until),
            Role::Standby { .. } => None,
        }
    }

    /// What to do at `now`, if anything. Call [`expire`](Self::expire) first.
    pub fn due(&self, now: Instant) -> Option<Action> {
        match self.role {
            Role::Standby { next_attempt } if now >= next_attempt => Some(Action::Acquire),
            Role::Leader { renew_at, .. } if now >= renew_at => Some(Action::Renew),
            _ => None,
        }
    }

    /// When the next action is due.
    pub fn wake_at(&self) -> Instant {
        match self.role {
            Role::Standby { next_attempt } => next_attempt,
            Role::Leader {
                renew_at,
                valid_until,
            } => renew_at.min(valid_until),
        }
    }

    /// A leader whose lease ran out without renewal steps down.
    pub fn expire(&mut self, now: Instant) -> Option<Change> {
        match self.role {
            Role::Leader { valid_until, .. } if now >= valid_until => {
                self.role = Role::Standby { next_attempt: now };
                Some(Change::Expired)
            }
            _ => None,
        }
    }

    /// Records the answer to an acquire sent at `sent_at`, received at `now`.
    pub fn acquired(&mut self, sent_at: Instant, now: Instant, answer: Acquired) -> Option<Change> {
        match answer {
            Acquired::Won => {
                let was_leader = self.is_leader();
                self.lead(sent_at, now);
                (!was_leader).then_some(Change::BecameLeader)
            }
            Acquired::Held { remaining } => {
                let poll = self.ttl.mul_f64(STANDBY_POLL);
                let wait = remaining.map_or(poll, |left| (left + EXPIRY_SLACK).min(poll));
                self.role = Role::Standby {
                    next_attempt: now + wait,
                };
                None
            }
            Acquired::Failed => {
                self.role = Role::Standby {
                    next_attempt: now + self.retry_delay(),
                };
                None
            }
        }
    }

    /// Records the answer to a renewal sent at `sent_at`, received at `now`.
    pub fn renewed(&mut self, sent_at: Instant, now: Instant, answer: Renewed) -> Option<Change> {
        let Role::Leader { valid_until, .. } = self.role else {
            return None;
        };
        match answer {
            Renewed::Yes => {
                self.lead(sent_at, now);
                None
            }
            Renewed::Lost => {
                self.role = Role::Standby { next_attempt: now };
                Some(Change::LostToAnother)
            }
            Renewed::Failed => {
                // Keep the lease we have; retry soon. `expire` ends it if
                // Redis stays unreachable.
                self.role = Role::Leader {
                    valid_until,
                    renew_at: now + self.retry_delay(),
                };
                self.expire(now)
            }
        }
    }

    fn lead(&mut self, sent_at: Instant, now: Instant) {
        let valid_until = sent_at + self.ttl.mul_f64(SAFETY);
        let renew_at = (sent_at + self.ttl / 3).max(now);
        self.role = Role::Leader {
            valid_until,
            renew_at,
        };
    }

    fn retry_delay(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Redis's side of the lease, with simulated time: one key with a value
    /// and an expiry, and the three commands beat uses.
    #[derive(Default)]
    struct FakeRedis {
        key: Option<(u32, Instant)>,
        /// Beats that cannot reach Redis (their commands fail).
        partitioned: Vec<u32>,
    }

    impl FakeRedis {
        fn live(&mut self, now: Instant) -> Option<(u32, Instant)> {
            if matches!(self.key, Some((_, expires)) if now >= expires) {
                self.key = None;
            }
            self.key
        }

        fn set_nx_px(&mut self, now: Instant, who: u32, ttl: Duration) -> Acquired {
            if self.partitioned.contains(&who) {
                return Acquired::Failed;
            }
            match self.live(now) {
                None => {
                    self.key = Some((who, now + ttl));
                    Acquired::Won
                }
                Some((_, expires)) => Acquired::Held {
                    remaining: Some(expires - now),
                },
            }
        }

        fn renew(&mut self, now: Instant, who: u32, ttl: Duration) -> Renewed {
            if self.partitioned.contains(&who) {
                return Renewed::Failed;
            }
            match self.live(now) {
                Some((holder, _)) if holder == who => {
                    self.key = Some((who, now + ttl));
                    Renewed::Yes
                }
                _ => Renewed::Lost,
            }
        }

        fn release(&mut self, now: Instant, who: u32) {
            if matches!(self.live(now), Some((holder, _)) if holder == who) {
                self.key = None;
            }
        }
    }

    struct Beat {
        id: u32,
        lease: Lease,
        alive: bool,
        changes: Vec<(Duration, Change)>,
    }

    const TTL: Duration = Duration::from_secs(2);
    const STEP: Duration = Duration::from_millis(5);

    /// Steps every live beat through simulated time, checking at each step
    /// that at most one may send. `event` can kill, partition or release.
    fn run(
        beats: &mut [Beat],
        redis: &mut FakeRedis,
        start: Instant,
        until: Duration,
        mut event: impl FnMut(Duration, &mut [Beat], &mut FakeRedis),
    ) {
        let mut elapsed = Duration::ZERO;
        while elapsed <= until {
            let now = start + elapsed;
            event(elapsed, beats, redis);
            for beat in beats.iter_mut().filter(|beat| beat.alive) {
                if let Some(change) = beat.lease.expire(now) {
                    beat.changes.push((elapsed, change));
                }
                let change = match beat.lease.due(now) {
                    Some(Action::Acquire) => {
                        let answer = redis.set_nx_px(now, beat.id, TTL);
                        beat.lease.acquired(now, now, answer)
                    }
                    Some(Action::Renew) => {
                        let answer = redis.renew(now, beat.id, TTL);
                        beat.lease.renewed(now, now, answer)
                    }
                    None => None,
                };
                if let Some(change) = change {
                    beat.changes.push((elapsed, change));
                }
            }
            let senders = beats
                .iter()
                .filter(|beat| beat.alive && beat.lease.may_send(now))
                .count();
            assert!(senders <= 1, "two beats may send at {elapsed:?}");
            elapsed += STEP;
        }
    }

    fn beats(start: Instant) -> Vec<Beat> {
        (1..=2)
            .map(|id| Beat {
                id,
                lease: Lease::new(TTL, start),
                alive: true,
                changes: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn one_leader_and_it_keeps_the_lease() {
        let start = Instant::now();
        let mut beats = beats(start);
        let mut redis = FakeRedis::default();
        run(
            &mut beats,
            &mut redis,
            start,
            Duration::from_secs(30),
            |_, _, _| {},
        );
        assert_eq!(beats[0].changes, [(Duration::ZERO, Change::BecameLeader)]);
        assert!(beats[1].changes.is_empty());
        assert!(beats[0].lease.may_send(start + Duration::from_secs(30)));
    }

    #[test]
    fn standby_takes_over_within_one_lease_period_of_the_leaders_death() {
        let start = Instant::now();
        let mut beats = beats(start);
        let mut redis = FakeRedis::default();
        let death = Duration::from_secs(10);
        run(
            &mut beats,
            &mut redis,
            start,
            Duration::from_secs(20),
            |elapsed, beats, _| {
                if elapsed == death {
                    beats[0].alive = false; // kill -9: no release
                }
            },
        );
        let (when, change) = beats[1].changes[0];
        assert_eq!(change, Change::BecameLeader);
        assert!(when > death, "took over before the death: {when:?}");
        assert!(
            when <= death + TTL + EXPIRY_SLACK + STEP,
            "took over {:?} after the death",
            when - death
        );
    }

    #[test]
    fn released_lease_is_taken_over_quickly() {
        let start = Instant::now();
        let mut beats = beats(start);
        let mut redis = FakeRedis::default();
        let stop = Duration::from_secs(5);
        run(
            &mut beats,
            &mut redis,
            start,
            Duration::from_secs(10),
            |elapsed, beats, redis| {
                if elapsed == stop {
                    beats[0].alive = false;
                    redis.release(start + elapsed, 1);
                }
            },
        );
        let (when, _) = beats[1].changes[0];
        assert!(when - stop <= TTL.mul_f64(STANDBY_POLL) + STEP, "{when:?}");
    }

    #[test]
    fn a_partitioned_leader_stops_sending_before_the_standby_starts() {
        let start = Instant::now();
        let mut beats = beats(start);
        let mut redis = FakeRedis::default();
        let cut = Duration::from_secs(5);
        // The safety check inside `run` is the real assertion: never two senders.
        run(
            &mut beats,
            &mut redis,
            start,
            Duration::from_secs(15),
            |elapsed, _, redis| {
                if elapsed == cut {
                    redis.partitioned.push(1);
                }
            },
        );
        assert_eq!(beats[0].changes[1].1, Change::Expired);
        let expired_at = beats[0].changes[1].0;
        let (taken_at, change) = beats[1].changes[0];
        assert_eq!(change, Change::BecameLeader);
        assert!(expired_at < taken_at);
        assert!(expired_at <= cut + TTL.mul_f64(SAFETY));
    }

    #[test]
    fn a_leader_that_finds_its_key_taken_steps_down() {
        let start = Instant::now();
        let mut lease = Lease::new(TTL, start);
        assert_eq!(lease.due(start), Some(Action::Acquire));
        assert_eq!(
            lease.acquired(start, start, Acquired::Won),
            Some(Change::BecameLeader)
        );
        let renew = lease.wake_at();
        assert_eq!(renew, start + TTL / 3);
        assert_eq!(lease.due(renew), Some(Action::Renew));
        assert_eq!(
            lease.renewed(renew, renew, Renewed::Lost),
            Some(Change::LostToAnother)
        );
        assert!(!lease.may_send(renew));
    }

    #[test]
    fn validity_counts_from_when_the_request_was_sent() {
        let start = Instant::now();
        let mut lease = Lease::new(TTL, start);
        // The answer took a whole second to arrive: the lease is shorter.
        let answered = start + Duration::from_secs(1);
        lease.acquired(start, answered, Acquired::Won);
        assert!(lease.may_send(start + TTL.mul_f64(SAFETY) - STEP));
        assert!(!lease.may_send(start + TTL.mul_f64(SAFETY)));
    }
}

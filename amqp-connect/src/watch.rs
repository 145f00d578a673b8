//! One warning when a connection is lost, one line when it is back.
//!
//! Celery's worker logs `consumer: Connection to broker lost. Trying to
//! re-establish the connection...` when RabbitMQ or Redis goes away, and an
//! operator's alerting greps for that line. Here every connection a program
//! holds (broker, result backend, beat's lease) reports to a
//! [`ConnectionWatch`] whenever an operation on it fails or succeeds, and the
//! watch turns that stream of observations into a few lines:
//!
//! ```text
//! WARNING Connection to the broker at redis://127.0.0.1:6379/7 lost: Connection refused (os error 111). Trying to re-establish the connection...
//! WARNING Still no connection to the broker at redis://127.0.0.1:6379/7 after 20 s (14 failed attempts): …
//! INFO    Connection to the broker at redis://127.0.0.1:6379/7 re-established after 31.2 s
//! ```
//!
//! Many tasks may share one connection and all fail together: the first
//! report opens the outage, the others only count. A reminder at most every
//! [`REMINDER_EVERY`] keeps a minute of retrying to a handful of lines.
//! Several pooled connections to one server notice a restart one after
//! another, so a failure just after a recovery (within [`FLAP_GRACE`]) is
//! the same outage's tail, not a new one: it is only logged if it lasts.
//! What the recovery itself did (messages redelivered, republished) is for
//! the code that did it to log, right after.

use std::{
    fmt::Display,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::{info, warn};

/// How often a continuing outage is mentioned again.
pub const REMINDER_EVERY: Duration = Duration::from_secs(20);

/// A failure this soon after a recovery is the tail of the same outage.
pub const FLAP_GRACE: Duration = Duration::from_secs(3);

/// The health of one connection, as far as its users have seen. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// "the broker at redis://…" (password already hidden).
    what: String,
    /// A lock-free answer to "is anything wrong?" for the hot path.
    down: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    outage: Option<Outage>,
    recovered: Option<Instant>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    reminded: Instant,
    failures: u64,
    /// Not announced (a tail within the grace): its end is not either.
    quiet: bool,
}

impl ConnectionWatch {
    /// A watch for `what`, e.g. `"the broker at redis://127.0.0.1:6379/7"`.
    /// Pass a URL only through [`Redacted`](crate::Redacted).
    pub fn new(what: impl Display) -> Self {
        Self {
            inner: Arc::new(Inner {
                what: what.to_string(),
                down: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// What this watch is about, for other log lines.
    pub fn what(&self) -> &str {
        &self.inner.what
    }

    /// An operation failed because the connection is gone.
    pub fn lost(&self, cause: &dyn Display) {
        let now = Instant::now();
        let mut state = self.state();
        let recovered = state.recovered;
        match state.outage.as_mut() {
            None => {
                let quiet = recovered.is_some_and(|at| now.duration_since(at) < FLAP_GRACE);
                if !quiet {
                    warn!(
                        "Connection to {} lost: {cause}. Trying to re-establish the connection...",
                        self.inner.what
                    );
                }
                state.outage = Some(Outage {
                    since: now,
                    reminded: now,
                    failures: 1,
                    quiet,
                });
                self.inner.down.store(true, Ordering::Release);
            }
            Some(outage) => {
                outage.failures += 1;
                let lasted = now.duration_since(outage.since);
                if outage.quiet && lasted >= FLAP_GRACE {
                    // A tail that goes on is an outage of its own after all.
                    outage.quiet = false;
                    outage.reminded = now;
                    warn!(
                        "Connection to {} lost again: {cause}. Trying to re-establish the connection...",
                        self.inner.what
                    );
                } else if now.duration_since(outage.reminded) >= REMINDER_EVERY {
                    outage.reminded = now;
                    warn!(
                        "Still no connection to {} after {:.0} s ({} failed attempts): {cause}",
                        self.inner.what,
                        lasted.as_secs_f64(),
                        outage.failures
                    );
                }
            }
        }
    }

    /// An operation succeeded. If that ends an outage, says so and returns
    /// how long it lasted.
    pub fn ok(&self) -> Option<Duration> {
        if !self.inner.down.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.state();
        let ended = state.outage.take()?;
        state.recovered = Some(Instant::now());
        self.inner.down.store(false, Ordering::Release);
        let lasted = ended.since.elapsed();
        if !ended.quiet {
            info!(
                "Connection to {} re-established after {:.1} s",
                self.inner.what,
                lasted.as_secs_f64()
            );
        }
        Some(lasted)
    }

    /// True between a [`lost`](Self::lost) and the next [`ok`](Self::ok).
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Holding this lock never panics half-way through an update.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_opened_once_and_closed_once() {
        let watch = ConnectionWatch::new("the broker at redis://127.0.0.1:1/0");
        assert_eq!(watch.ok(), None, "nothing to recover from yet");
        watch.lost(&"refused");
        watch.lost(&"refused again");
        assert!(watch.is_down());
        assert!(watch.ok().is_some());
        assert!(!watch.is_down());
        assert_eq!(
            watch.ok(),
            None,
            "a second success is not a second recovery"
        );
    }

    #[test]
    fn a_failure_right_after_a_recovery_is_the_same_outage() {
        let watch = ConnectionWatch::new("x");
        watch.lost(&"gone");
        assert!(watch.ok().is_some());
        // A second pooled connection notices the restart a moment later.
        watch.lost(&"broken pipe");
        assert!(watch.is_down());
        let state = watch.state();
        assert!(state.outage.as_ref().is_some_and(|outage| outage.quiet));
        drop(state);
        assert!(watch.ok().is_some());
    }

    #[test]
    fn clones_share_one_outage() {
        let watch = ConnectionWatch::new("x");
        let other = watch.clone();
        watch.lost(&"gone");
        assert!(other.is_down());
        assert!(other.ok().is_some());
        assert!(!watch.is_down());
    }
}

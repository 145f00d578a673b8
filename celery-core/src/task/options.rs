//! The options Celery keeps on a task (`@app.task(max_retries=…, …)`),
//! with Celery's names and defaults.
//!
//! The worker acts on `max_retries`, `default_retry_delay`,
//! `autoretry_for`, `retry_backoff`, `retry_backoff_max` and
//! `retry_jitter`. The others are kept and reported (`inspect registered
//! --taskinfoitems`), and the worker acts on them as the README's table
//! says: rate and time limits arrive with the operations work, and
//! `acks_late` is always on here (a task is acked after it ran).

use std::time::Duration;

use rand::Rng;

/// A task's options. Build them through [`Task`](super::Task)'s methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// `max_retries`: retries allowed after the first run; `None` for ever
    /// (Celery's default 3).
    pub max_retries: Option<u32>,
    /// `default_retry_delay`: a retry's countdown when it names none (3 min).
    pub default_retry_delay: Duration,
    /// `autoretry_for`: exception type names (`ConnectionError`; `Exception`
    /// for all) whose failure is retried instead.
    pub autoretry_for: Vec<String>,
    /// `retry_backoff`: for automatic retries, `factor × 2^retries` seconds
    /// (`true` in Celery is factor 1); `None` uses `default_retry_delay`.
    pub retry_backoff: Option<u32>,
    /// `retry_backoff_max`: the backoff's cap (10 min).
    pub retry_backoff_max: Duration,
    /// `retry_jitter`: a random delay up to the backoff, not the backoff
    /// itself (on by default, as in Celery).
    pub retry_jitter: bool,
    /// `rate_limit`: `"10/s"`, `"100/m"`, `"1000/h"`.
    pub rate_limit: Option<String>,
    /// `time_limit`, in seconds.
    pub time_limit: Option<f64>,
    /// `soft_time_limit`, in seconds.
    pub soft_time_limit: Option<f64>,
    /// `ignore_result`: no result stored.
    pub ignore_result: bool,
    /// `track_started`: STARTED stored when the task starts.
    pub track_started: bool,
    /// `acks_late`: always on in this worker, whatever is set.
    pub acks_late: bool,
    /// `acks_on_failure_or_timeout` (on by default).
    pub acks_on_failure_or_timeout: bool,
    /// `reject_on_worker_lost`.
    pub reject_on_worker_lost: bool,
    /// `typing`: check the arguments against the signature (on by default).
    pub typing: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            max_retries: Some(3),
            default_retry_delay: Duration::from_secs(180),
            autoretry_for: Vec::new(),
            retry_backoff: None,
            retry_backoff_max: Duration::from_secs(600),
            retry_jitter: true,
            rate_limit: None,
            time_limit: None,
            soft_time_limit: None,
            ignore_result: false,
            track_started: false,
            acks_late: true,
            acks_on_failure_or_timeout: true,
            reject_on_worker_lost: false,
            typing: true,
        }
    }
}

impl TaskOptions {
    /// Whether a failure of this type is retried automatically.
    pub fn retries_automatically(&self, exc_type: &str) -> bool {
        self.autoretry_for
            .iter()
            .any(|name| name == exc_type || name == "Exception" || name == "BaseException")
    }

    /// The countdown of an automatic retry after `retries` retries, as
    /// Celery's `get_exponential_backoff_interval`: `factor × 2^retries`,
    /// capped, then (with jitter) a random whole number of seconds up to it.
    pub fn autoretry_countdown(&self, retries: u32, rng: &mut impl Rng) -> Duration {
        let Some(factor) = self.retry_backoff else {
            return self.default_retry_delay;
        };
        let cap = self.retry_backoff_max.as_secs();
        let full = u64::from(factor)
            .saturating_mul(2u64.saturating_pow(retries.min(63)))
            .min(cap);
        let seconds = match self.retry_jitter {
            true => rng.random_range(0..=full),
            false => full,
        };
        Duration::from_secs(seconds)
    }

    /// `name=value` pairs for `inspect registered`'s task info items.
    pub fn info(&self, item: &str) -> Option<String> {
        let limit = |limit: Option<f64>| limit.map_or("None".to_owned(), |l| l.to_string());
        Some(match item {
            "rate_limit" => self.rate_limit.clone().unwrap_or_else(|| "None".to_owned()),
            "time_limit" => limit(self.time_limit),
            "soft_time_limit" => limit(self.soft_time_limit),
            "max_retries" => self
                .max_retries
                .map_or("None".to_owned(), |n| n.to_string()),
            "default_retry_delay" => self.default_retry_delay.as_secs().to_string(),
            "ignore_result" => python_bool(self.ignore_result),
            "track_started" => python_bool(self.track_started),
            "acks_late" => python_bool(self.acks_late),
            "typing" => python_bool(self.typing),
            _ => return None,
        })
    }
}

fn python_bool(value: bool) -> String {
    if value { "True" } else { "False" }.to_owned()
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn celerys_defaults() {
        let options = TaskOptions::default();
        assert_eq!(options.max_retries, Some(3));
        assert_eq!(options.default_retry_delay, Duration::from_secs(180));
        assert!(options.retry_jitter && options.typing && options.acks_on_failure_or_timeout);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitters_below_it() {
        let mut rng = StdRng::seed_from_u64(1);
        let options = TaskOptions {
            retry_backoff: Some(2),
            retry_jitter: false,
            ..TaskOptions::default()
        };
        let seconds: Vec<u64> = (0..12)
            .map(|r| options.autoretry_countdown(r, &mut rng).as_secs())
            .collect();
        assert_eq!(seconds, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
        let jittered = TaskOptions {
            retry_jitter: true,
            ..options
        };
        for retries in 0..10 {
            let full = (2u64 << retries).min(600);
            assert!(jittered.autoretry_countdown(retries, &mut rng).as_secs() <= full);
        }
        let none = TaskOptions::default();
        assert_eq!(
            none.autoretry_countdown(5, &mut rng),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn autoretry_matches_by_type_name_or_all_exceptions() {
        let options = TaskOptions {
            autoretry_for: vec!["ConnectionError".into()],
            ..TaskOptions::default()
        };
        assert!(options.retries_automatically("ConnectionError"));
        assert!(!options.retries_automatically("ValueError"));
        let all = TaskOptions {
            autoretry_for: vec!["Exception".into()],
            ..TaskOptions::default()
        };
        assert!(all.retries_automatically("ValueError"));
    }
}

//! Celery's settings, by Celery's names: read once from the environment
//! (`CELERY_WORKER_CONCURRENCY=8`), a TOML file (`worker_concurrency = 8`)
//! and the app's defaults, into one typed [`Settings`] that the rest of the
//! code is handed.
//!
//! ```python
//! # celeryconfig.py                        # Django: CELERY_BROKER_URL = … in settings.py
//! broker_url = 'redis://127.0.0.1:6379/7'
//! worker_concurrency = 8
//! broker_transport_options = {'visibility_timeout': 600}
//! ```
//!
//! is, here, `celeryconfig.toml`:
//!
//! ```toml
//! broker_url = "redis://127.0.0.1:6379/7"
//! worker_concurrency = 8
//! [broker_transport_options]
//! visibility_timeout = 600
//! ```
//!
//! or the variables `CELERY_BROKER_URL`, `CELERY_WORKER_CONCURRENCY=8` and
//! `CELERY_BROKER_TRANSPORT_OPTIONS='{"visibility_timeout": 600}'`.
//!
//! Each value is checked where it is read, and an error names the setting,
//! where it was written and what it expects. A name Celery does not have is
//! an error naming the closest one; a Celery setting this worker does not
//! act on yet is a warning (in [`Settings::warnings`]), never silently
//! ignored. [`SUPPORTED`] lists what is read.

mod names;
mod sources;

use std::{ops::RangeInclusive, path::PathBuf, time::Duration};

use amqp_connect::{QueueType, Seconds, SecretUrl, seconds::DAY};
use serde_json::Value;
use thiserror::Error;

pub use names::CELERY_SETTINGS;
pub use sources::{Origin, Sources, env_name};

use sources::{Raw, as_object, json_from_text};

/// The settings this worker reads: Celery's names, then a few of our own
/// (marked so in their docs), which Celery has no name for.
pub const SUPPORTED: &[&str] = &[
    "broker_url",
    "result_backend",
    "task_default_queue",
    "task_default_queue_type",
    "worker_concurrency",
    "worker_prefetch_multiplier",
    "worker_send_task_events",
    "broker_transport_options",
    "result_backend_transport_options",
    // Ours.
    "connect_timeout",
    "worker_blocking_threads",
];

/// kombu's transport options that this worker acts on; the others are
/// warned about.
const TRANSPORT_OPTIONS: &[&str] = &["visibility_timeout", "master_name"];

/// A setting that could not be used, as one line for the user.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not a TOML configuration file: {problem}", path.display())]
    NotToml {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{origin}: unknown setting '{name}'{}", closest.as_ref().map_or_else(
        || " (settings are Celery's names in lower case, such as worker_concurrency)".to_owned(),
        |closest| format!("; did you mean '{closest}'?"),
    ))]
    Unknown {
        name: String,
        origin: Origin,
        closest: Option<String>,
    },
    #[error("setting {name} ({origin}): {problem}")]
    Invalid {
        name: String,
        origin: Origin,
        problem: String,
    },
}

/// kombu's `broker_transport_options` (and `result_backend_transport_options`)
/// that this worker acts on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Redis: how long an unacked message of a dead worker waits before it
    /// is restored to its queue (kombu's default: an hour).
    pub visibility_timeout: Duration,
    /// Redis Sentinel: the master's name, for `sentinel://` URLs.
    pub master_name: Option<String>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            visibility_timeout: Duration::from_secs(3600),
            master_name: None,
        }
    }
}

/// Celery's settings, typed, with Celery's defaults where nothing set them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// `broker_url`: Celery's default is RabbitMQ on this machine.
    pub broker_url: SecretUrl,
    /// `result_backend`: none by default (results are not stored).
    pub result_backend: Option<SecretUrl>,
    /// `task_default_queue`: where tasks go that name no queue, and what a
    /// worker consumes when given none (`celery`).
    pub task_default_queue: String,
    /// `task_default_queue_type`: `classic`, or `quorum` for a cluster.
    pub task_default_queue_type: QueueType,
    /// `worker_concurrency`: tasks run at once; `None` is the worker's
    /// default (256 async slots, see `worker::DEFAULT_CONCURRENCY`).
    pub worker_concurrency: Option<u32>,
    /// `worker_prefetch_multiplier`: prefetch = concurrency × this (4).
    pub worker_prefetch_multiplier: u32,
    /// `worker_send_task_events` (`-E`): task events for monitors.
    pub worker_send_task_events: bool,
    /// `broker_transport_options`.
    pub broker_transport_options: TransportOptions,
    /// `result_backend_transport_options`.
    pub result_backend_transport_options: TransportOptions,
    /// Ours, `connect_timeout`: how long the first connection keeps being
    /// retried while a broker or backend starts (30 s).
    pub connect_timeout: Duration,
    /// Ours, `worker_blocking_threads`: threads for blocking tasks; `None`
    /// is one per CPU.
    pub worker_blocking_threads: Option<u32>,
    /// What the sources set that this worker does not act on, one line
    /// each: log them at start.
    pub warnings: Vec<String>,
}

/// Celery's default broker: RabbitMQ on this machine, user guest.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@localhost:5672//";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker_url: SecretUrl::from(DEFAULT_BROKER_URL),
            result_backend: None,
            task_default_queue: "celery".to_owned(),
            task_default_queue_type: QueueType::Classic,
            worker_concurrency: None,
            worker_prefetch_multiplier: 4,
            worker_send_task_events: false,
            broker_transport_options: TransportOptions::default(),
            result_backend_transport_options: TransportOptions::default(),
            connect_timeout: Duration::from_secs(30),
            worker_blocking_threads: None,
            warnings: Vec::new(),
        }
    }
}

/// `worker_concurrency`'s range.
pub const CONCURRENCY: RangeInclusive<u32> = 1..=10_000;
/// `worker_prefetch_multiplier`'s range.
pub const PREFETCH_MULTIPLIER: RangeInclusive<u32> = 1..=1000;
/// `visibility_timeout`: a sweep every second is the most a shared broker
/// should take, and a month the longest wait.
pub const VISIBILITY_TIMEOUT: Seconds = Seconds::between(1.0, 30.0 * DAY);
/// `worker_blocking_threads`' range.
pub const BLOCKING_THREADS: RangeInclusive<u32> = 1..=1024;

impl Settings {
    /// Reads every supported setting from `sources`; the first bad value
    /// is the error.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        sources.check_app_defaults()?;
        let defaults = Settings::default();
        let mut warnings = sources.unsupported().to_vec();
        let read = Reader { sources };
        let mut broker_transport_options =
            read.transport_options("broker_transport_options", &mut warnings)?;
        let mut result_backend_transport_options =
            read.transport_options("result_backend_transport_options", &mut warnings)?;
        // The variable earlier releases read for both.
        if let Some((raw, origin)) = sources.variable("CELERY_SENTINEL_MASTER") {
            let name = text(raw).map_err(|problem| ConfigError::Invalid {
                name: "master_name".to_owned(),
                origin,
                problem,
            })?;
            for options in [
                &mut broker_transport_options,
                &mut result_backend_transport_options,
            ] {
                options.master_name.get_or_insert_with(|| name.clone());
            }
        }
        Ok(Settings {
            broker_url: read.get("broker_url", url)?.unwrap_or(defaults.broker_url),
            result_backend: read.get("result_backend", url)?,
            task_default_queue: read
                .get("task_default_queue", queue_name)?
                .unwrap_or(defaults.task_default_queue),
            task_default_queue_type: read
                .get("task_default_queue_type", queue_type)?
                .unwrap_or(defaults.task_default_queue_type),
            worker_concurrency: read.get("worker_concurrency", |raw| whole(raw, CONCURRENCY))?,
            worker_prefetch_multiplier: read
                .get("worker_prefetch_multiplier", |raw| {
                    whole(raw, PREFETCH_MULTIPLIER)
                })?
                .unwrap_or(defaults.worker_prefetch_multiplier),
            worker_send_task_events: read
                .get("worker_send_task_events", boolean)?
                .unwrap_or(defaults.worker_send_task_events),
            broker_transport_options,
            result_backend_transport_options,
            connect_timeout: read
                .get("connect_timeout", |raw| {
                    seconds(raw, Seconds::CONNECT_TIMEOUT)
                })?
                .unwrap_or(defaults.connect_timeout),
            worker_blocking_threads: read.get("worker_blocking_threads", |raw| {
                whole(raw, BLOCKING_THREADS)
            })?,
            warnings,
        })
    }
}

/// Reads one setting from the sources and parses it, naming its origin on
/// failure.
struct Reader<'a> {
    sources: &'a Sources,
}

impl Reader<'_> {
    fn get<T>(
        &self,
        name: &str,
        parse: impl Fn(Raw) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((raw, origin)) = self.sources.raw(name) else {
            return Ok(None);
        };
        parse(raw)
            .map(Some)
            .map_err(|problem| ConfigError::Invalid {
                name: name.to_owned(),
                origin,
                problem,
            })
    }

    /// kombu's transport options: the ones we act on, typed; a warning for
    /// each of the others.
    fn transport_options(
        &self,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Result<TransportOptions, ConfigError> {
        let mut options = TransportOptions::default();
        let Some((raw, origin)) = self.sources.raw(name) else {
            return Ok(options);
        };
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            name: format!("{name}.{key}").trim_end_matches('.').to_owned(),
            origin: origin.clone(),
            problem,
        };
        let table = structured(raw)
            .and_then(as_object)
            .map_err(|problem| invalid("", problem))?;
        for (key, value) in table {
            match key.as_str() {
                "visibility_timeout" => {
                    options.visibility_timeout = seconds(Raw::Value(value), VISIBILITY_TIMEOUT)
                        .map_err(|problem| invalid(&key, problem))?;
                }
                "master_name" => {
                    let master = text(Raw::Value(value)).map_err(|problem| invalid(&key, problem))?;
                    options.master_name = Some(master);
                }
                _ => warnings.push(format!(
                    "{origin}: {name}.{key} is not supported by this worker yet; it is ignored (supported: {})",
                    TRANSPORT_OPTIONS.join(", ")
                )),
            }
        }
        Ok(options)
    }
}

fn text(raw: Raw) -> Result<String, String> {
    match raw {
        Raw::Text(text) | Raw::Value(Value::String(text)) => Ok(text),
        Raw::Value(other) => Err(format!("expected text, got {other}")),
    }
}

fn url(raw: Raw) -> Result<SecretUrl, String> {
    let text = text(raw)?;
    match text.trim().is_empty() {
        true => Err("expected a URL, got nothing".to_owned()),
        false => Ok(SecretUrl::from(text)),
    }
}

fn queue_name(raw: Raw) -> Result<String, String> {
    amqp_connect::settings::queue_name(&text(raw)?)
}

fn queue_type(raw: Raw) -> Result<QueueType, String> {
    match text(raw)?.trim().to_ascii_lowercase().as_str() {
        "classic" => Ok(QueueType::Classic),
        "quorum" => Ok(QueueType::Quorum),
        other => Err(format!("expected classic or quorum, got '{other}'")),
    }
}

fn whole(raw: Raw, range: RangeInclusive<u32>) -> Result<u32, String> {
    let expected = || {
        format!(
            "expected a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let number = match &raw {
        Raw::Text(text) => text.trim().parse::<u32>().ok(),
        Raw::Value(Value::Number(number)) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        Raw::Value(_) => None,
    };
    match number {
        Some(number) if range.contains(&number) => Ok(number),
        _ => Err(format!("{}, got {}", expected(), shown(&raw))),
    }
}

fn seconds(raw: Raw, range: Seconds) -> Result<Duration, String> {
    let checked = match &raw {
        Raw::Text(text) => range.parse(text),
        Raw::Value(Value::Number(number)) => range.check(number.as_f64().unwrap_or(f64::NAN)),
        Raw::Value(Value::String(text)) => range.parse(text),
        Raw::Value(_) => range.check(f64::NAN),
    };
    checked.map_err(|expected| format!("{expected}, got {}", shown(&raw)))
}

fn boolean(raw: Raw) -> Result<bool, String> {
    match &raw {
        Raw::Value(Value::Bool(value)) => Ok(*value),
        Raw::Text(text) | Raw::Value(Value::String(text)) => {
            match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(format!("expected true or false, got {}", shown(&raw))),
            }
        }
        Raw::Value(_) => Err(format!("expected true or false, got {}", shown(&raw))),
    }
}

/// A structured value: JSON text from the environment, or the file's table.
fn structured(raw: Raw) -> Result<Value, String> {
    match raw {
        Raw::Text(text) => json_from_text(&text),
        Raw::Value(value) => Ok(value),
    }
}

/// A value as the user wrote it, for an error message.
fn shown(raw: &Raw) -> String {
    match raw {
        Raw::Text(text) => format!("'{text}'"),
        Raw::Value(value) => value.to_string(),
    }
}

#[cfg(test)]
mod tests;

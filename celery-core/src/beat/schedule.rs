//! The schedule file: Celery's `beat_schedule` setting, as TOML.
//!
//! ```python
//! app.conf.beat_schedule = {
//!     'cleanup-verification-codes': {'task': 'cleanup', 'schedule': 30.0},
//!     'daily-report': {'task': 'SMS', 'schedule': crontab(hour=9, minute=0),
//!                      'args': ('13800000000', 'report')},
//! }
//! ```
//!
//! becomes one `[entries.<name>]` table per entry (see `beat-schedule.toml`).
//! A table key is unique by TOML's own rules, so two entries with one name
//! are refused by the parser, as Python's dict would silently keep the last.
//!
//! Everything is checked when beat starts, and every problem is reported as
//! one line, `path:line: what is wrong`, so a typo in a monthly job fails the
//! deploy today rather than the job next month.

use std::{collections::BTreeMap, ops::Range, path::Path, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use toml::Spanned;

use super::cron::Cron;
use amqp_connect::{Seconds, seconds::TEN_YEARS};

/// What to do with slots that passed while no beat was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Send one message for all the missed slots of an entry (the default:
    /// a report that should have gone out goes out, once).
    #[default]
    Once,
    /// Send nothing for missed slots; log how many were skipped.
    None,
    /// Send one message per missed slot, oldest first, at most
    /// `catch_up_limit` (the most recent ones) per entry.
    All,
}

/// A schedule file that could not be used, as one line for the user.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("cannot read the beat schedule {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Invalid {
        path: String,
        line: usize,
        problem: String,
    },
}

/// The whole file, checked.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Names the Redis keys (`beat:<name>:lease`, `beat:<name>:state`):
    /// the file's `name`, else the file name without `.toml`.
    pub name: String,
    pub catch_up: CatchUp,
    pub catch_up_limit: usize,
    /// In name order.
    pub entries: Vec<Entry>,
}

/// One periodic task.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub queue: String,
    /// Discard the message if no worker started it this long after sending.
    pub expires: Option<Duration>,
    pub timing: Timing,
}

/// When an entry runs.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Every N seconds, at multiples of N since the Unix epoch (so the slots
    /// are the same for every beat process and across restarts, which is
    /// what lets the state and the lease say "this slot was sent").
    Every(Duration),
    /// A cron expression read in a time zone.
    Cron { cron: Cron, tz: Tz },
}

impl Timing {
    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Every(period) => {
                let period = i64::try_from(period.as_millis()).ok()?.max(1);
                let slot = (after.timestamp_millis().div_euclid(period) + 1).checked_mul(period)?;
                DateTime::from_timestamp_millis(slot)
            }
            Timing::Cron { cron, tz } => cron.next_after(after, tz),
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timing::Every(period) => write!(f, "every {}s", period.as_secs_f64()),
            Timing::Cron { cron, tz } => write!(f, "cron '{}' {}", cron.source(), tz.name()),
        }
    }
}

/// The file as written (unknown keys are errors, to catch typos).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    name: Option<String>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    catch_up: CatchUp,
    catch_up_limit: Option<Spanned<usize>>,
    #[serde(default)]
    entries: BTreeMap<String, Spanned<EntryDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDef {
    task: Spanned<String>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
    every: Option<Spanned<u64>>,
    cron: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
    expires: Option<Spanned<f64>>,
}

/// The longest `every` and `expires`: ten years ahead (see
/// `amqp_connect::seconds::TEN_YEARS`), far inside what the clock arithmetic holds.
const MAX_AHEAD_SECS: u64 = TEN_YEARS as u64;

/// Celery's default queue.
const DEFAULT_QUEUE: &str = "celery";
const DEFAULT_CATCH_UP_LIMIT: usize = 100;

/// Reads and checks a schedule file.
pub fn load(path: &Path) -> Result<Schedule, ScheduleError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let default_name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "beat".to_owned());
    parse(&text, &path.display().to_string(), &default_name)
}

/// Checks a schedule given as text; `path` only names it in errors.
pub fn parse(text: &str, path: &str, default_name: &str) -> Result<Schedule, ScheduleError> {
    let invalid = |span: Option<Range<usize>>, problem: String| ScheduleError::Invalid {
        path: path.to_owned(),
        line: span.map_or(1, |span| line_of(text, span.start)),
        // One line, whatever the parser said.
        problem: problem.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let file: FileDef =
        toml::from_str(text).map_err(|error| invalid(error.span(), error.message().to_owned()))?;

    let zone = |name: &Spanned<String>| {
        name.get_ref().parse::<Tz>().map_err(|_| {
            invalid(
                Some(name.span()),
                format!(
                    "unknown time zone '{}' (use an IANA name such as Asia/Shanghai or UTC)",
                    name.get_ref()
                ),
            )
        })
    };
    let file_tz = match &file.timezone {
        Some(name) => zone(name)?,
        None => Tz::UTC,
    };
    let catch_up_limit = match &file.catch_up_limit {
        Some(limit) if *limit.get_ref() == 0 => {
            return Err(invalid(
                Some(limit.span()),
                "catch_up_limit must be at least 1".to_owned(),
            ));
        }
        Some(limit) => *limit.get_ref(),
        None => DEFAULT_CATCH_UP_LIMIT,
    };
    if file.entries.is_empty() {
        return Err(invalid(
            None,
            "no entries: add at least one [entries.<name>] table with a task and `every` or `cron`"
                .to_owned(),
        ));
    }

    let mut entries = Vec::with_capacity(file.entries.len());
    for (name, spanned) in &file.entries {
        let span = spanned.span();
        let def = spanned.get_ref();
        let in_entry = |span: Range<usize>, problem: String| {
            invalid(Some(span), format!("entry '{name}': {problem}"))
        };
        let tz = match &def.timezone {
            Some(name) => zone(name)?,
            None => file_tz,
        };
        let timing = match (&def.every, &def.cron) {
            (Some(_), Some(cron)) => {
                return Err(in_entry(
                    cron.span(),
                    "has both `every` and `cron`; keep one".to_owned(),
                ));
            }
            (None, None) => {
                return Err(in_entry(
                    span,
                    "needs `every = <seconds>` or `cron = \"<minute hour day month weekday>\"`"
                        .to_owned(),
                ));
            }
            (Some(every), None) if !(1..=MAX_AHEAD_SECS).contains(every.get_ref()) => {
                return Err(in_entry(
                    every.span(),
                    format!("`every` must be from 1 to {MAX_AHEAD_SECS} seconds (ten years)"),
                ));
            }
            (Some(every), None) => {
                if def.timezone.is_some() {
                    // Harmless, but it suggests the author expected it to matter.
                    tracing::debug!(entry = %name, "timezone has no effect on an `every` entry");
                }
                Timing::Every(Duration::from_secs(*every.get_ref()))
            }
            (None, Some(cron)) => Timing::Cron {
                cron: Cron::parse(cron.get_ref())
                    .map_err(|error| in_entry(cron.span(), error.to_string()))?,
                tz,
            },
        };
        let expires = match &def.expires {
            Some(seconds) => match Seconds::between(f64::MIN_POSITIVE, MAX_AHEAD_SECS as f64)
                .check(*seconds.get_ref())
            {
                Ok(expires) => Some(expires),
                Err(_) => {
                    return Err(in_entry(
                        seconds.span(),
                        format!(
                            "`expires` must be more than 0 and at most {MAX_AHEAD_SECS} seconds (ten years)"
                        ),
                    ));
                }
            },
            None => None,
        };
        let queue = match &def.queue {
            Some(queue) if queue.get_ref().trim().is_empty() => {
                return Err(in_entry(
                    queue.span(),
                    "`queue` must not be empty".to_owned(),
                ));
            }
            Some(queue) => queue.get_ref().clone(),
            None => DEFAULT_QUEUE.to_owned(),
        };
        if def.task.get_ref().trim().is_empty() {
            return Err(in_entry(
                def.task.span(),
                "`task` must not be empty".to_owned(),
            ));
        }
        entries.push(Entry {
            name: name.clone(),
            task: def.task.get_ref().clone(),
            args: def.args.clone(),
            kwargs: def.kwargs.clone(),
            queue,
            expires,
            timing,
        });
    }
    Ok(Schedule {
        name: file.name.unwrap_or_else(|| default_name.to_owned()),
        catch_up: file.catch_up,
        catch_up_limit,
        entries,
    })
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn error(text: &str) -> String {
        parse(text, "beat.toml", "beat").unwrap_err().to_string()
    }

    #[test]
    fn entries_options_and_zones() {
        let schedule = parse(
            r#"
name = "demo"
timezone = "Asia/Shanghai"
catch_up = "all"
catch_up_limit = 5

[entries.a]
task = "SMS"
args = ["13800000000", "report"]
kwargs = { urgent = true }
cron = "0 9 * * *"
queue = "sms"
expires = 60

[entries.b]
task = "cleanup"
every = 30
"#,
            "x.toml",
            "x",
        )
        .unwrap();
        assert_eq!(schedule.name, "demo");
        assert_eq!(schedule.catch_up, CatchUp::All);
        assert_eq!(schedule.catch_up_limit, 5);
        let a = &schedule.entries[0];
        assert_eq!((a.name.as_str(), a.queue.as_str()), ("a", "sms"));
        assert_eq!(a.expires, Some(Duration::from_secs(60)));
        assert_eq!(a.kwargs["urgent"], Value::Bool(true));
        assert_eq!(schedule.entries[1].queue, "celery");
    }

    #[test]
    fn every_slots_are_aligned_to_the_epoch() {
        let timing = Timing::Every(Duration::from_secs(30));
        let after = DateTime::parse_from_rfc3339("2026-01-01T10:00:12Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            timing.next_after(after).unwrap().to_rfc3339(),
            "2026-01-01T10:00:30+00:00"
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let unknown_field = "[entries.a]\ntask = \"x\"\nevery = 1\nqueu = \"q\"\n";
        let message = error(unknown_field);
        assert!(message.starts_with("beat.toml:4: "), "{message}");
        assert!(message.contains("queu"), "{message}");

        let bad_cron = "timezone = \"UTC\"\n\n[entries.a]\ntask = \"x\"\ncron = \"0 25 * * *\"\n";
        assert_eq!(
            error(bad_cron),
            "beat.toml:5: entry 'a': bad hour field '25': 25 is out of range 0-23"
        );

        let bad_zone = "timezone = \"Asia/Shangai\"\n[entries.a]\ntask = \"x\"\nevery = 1\n";
        let message = error(bad_zone);
        assert!(
            message.starts_with("beat.toml:1: unknown time zone 'Asia/Shangai'"),
            "{message}"
        );

        let entry_zone =
            "[entries.a]\ntask = \"x\"\ncron = \"0 9 * * *\"\ntimezone = \"Mars/Base\"\n";
        assert!(error(entry_zone).starts_with("beat.toml:4: unknown time zone 'Mars/Base'"));

        let duplicate =
            "[entries.a]\ntask = \"x\"\nevery = 1\n\n[entries.a]\ntask = \"y\"\nevery = 2\n";
        let message = error(duplicate);
        assert!(message.starts_with("beat.toml:5: "), "{message}");
        assert!(message.contains("duplicate"), "{message}");

        let neither = "[entries.a]\ntask = \"x\"\n";
        assert!(error(neither).contains("entry 'a': needs `every"));

        let both = "[entries.a]\ntask = \"x\"\nevery = 1\ncron = \"* * * * *\"\n";
        assert!(error(both).starts_with("beat.toml:4: entry 'a': has both"));

        for huge in [
            "expires = 1e300",
            "expires = 315360001",
            "expires = -1",
            "expires = nan",
        ] {
            let text = format!("[entries.a]\ntask = \"x\"\nevery = 1\n{huge}\n");
            assert!(
                error(&text).starts_with("beat.toml:4: entry 'a': `expires` must be"),
                "{huge}: {}",
                error(&text)
            );
        }
        let huge_every = "[entries.a]\ntask = \"x\"\nevery = 999999999999\n";
        assert!(
            error(huge_every).contains("`every` must be from 1 to"),
            "{}",
            error(huge_every)
        );

        let bad_mode = "catch_up = \"sometimes\"\n[entries.a]\ntask = \"x\"\nevery = 1\n";
        let message = error(bad_mode);
        assert!(message.starts_with("beat.toml:1: "), "{message}");
        assert!(message.contains("sometimes"), "{message}");

        assert!(error("").contains("no entries"));
        assert!(!error(bad_mode).contains('\n'));
    }
}

//! Celery's timestamps: ISO-8601 text in the `eta` and `expires` headers and
//! in a result's `date_done`.
//!
//! Python writes `datetime.isoformat()`, e.g. `2026-11-24T15:44:10.373954+00:00`.
//! Producers in the wild also send naive times (no offset) — Celery reads
//! those as UTC when `enable_utc` is on, its default — and a `Z` suffix.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeDelta, Utc};

/// Parses an `eta`/`expires` header. `None` for text that is not a time.
pub fn parse_celery_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(aware) = DateTime::parse_from_rfc3339(text) {
        return Some(aware.with_timezone(&Utc));
    }
    // isoformat() with a space separator, or a naive time (taken as UTC).
    if let Ok(aware) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(aware.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

/// `time` plus `delay`, or `None` past the end of chrono's calendar.
///
/// chrono's `+` panics on overflow: every "now + countdown" goes through here.
pub fn after(time: DateTime<Utc>, delay: Duration) -> Option<DateTime<Utc>> {
    time.checked_add_signed(TimeDelta::from_std(delay).ok()?)
}

/// Formats a time as Python's `isoformat()` of an aware UTC datetime.
pub fn format_celery_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Seconds since the epoch, as Python's `time.time()` gives them (events'
/// `timestamp`, a request's `time_start`).
pub fn epoch_seconds(time: DateTime<Utc>) -> f64 {
    // Microseconds are exact in an f64 until the year 2255.
    time.timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_python_isoformat() {
        let text = "2026-11-24T15:44:10.373954+00:00";
        let time = parse_celery_time(text).unwrap();
        assert_eq!(format_celery_time(time), text);
    }

    #[test]
    fn after_is_checked_instead_of_panicking() {
        let now = parse_celery_time("2026-11-24T15:44:10Z").unwrap();
        assert_eq!(
            after(now, Duration::from_secs(60)),
            parse_celery_time("2026-11-24T15:45:10Z")
        );
        assert_eq!(after(now, Duration::MAX), None);
        assert_eq!(after(now, Duration::from_secs(u64::MAX / 2)), None);
    }

    #[test]
    fn accepts_naive_zulu_and_offset_times() {
        let utc = parse_celery_time("2026-11-24T15:44:10").unwrap();
        assert_eq!(parse_celery_time("2026-11-24T15:44:10Z"), Some(utc));
        assert_eq!(parse_celery_time("2026-11-24 23:44:10+08:00"), Some(utc));
        assert_eq!(parse_celery_time("tomorrow"), None);
    }
}

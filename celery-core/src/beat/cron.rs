//! Five-field cron expressions (`minute hour day-of-month month day-of-week`)
//! and "when is the next run after this instant, in this time zone".
//!
//! Celery's `crontab(minute=0, hour=9)` is this; we read the classic text
//! form instead (`"0 9 * * *"`), as in a crontab file. Written here rather
//! than taken from a crate because the interesting part is not the parser
//! (a hundred lines) but the daylight-saving rule, and that must be ours,
//! stated and tested:
//!
//! * **A wall-clock time that does not exist** (America/New_York, second
//!   Sunday of March: 02:00 → 03:00, so 02:30 never happens) runs **once, at
//!   the moment the clock jumps** (03:00 EDT). Skipping it would silently
//!   lose a daily job once a year.
//! * **A wall-clock time that happens twice** (first Sunday of November:
//!   01:30 EDT, then 01:30 EST) runs **once, at its first occurrence**.
//!   Every local slot runs exactly once; a daily job never runs twice.
//!
//! Syntax: `*`, `N`, `A-B`, `*/S`, `A-B/S`, `N/S`, lists `A,B-C`, month and
//! weekday names (`jan`, `mon`), weekday 0 or 7 = Sunday, and the macros
//! `@yearly @annually @monthly @weekly @daily @midnight @hourly`. As in Vixie
//! cron, when both day-of-month and day-of-week are restricted a day matches
//! if *either* does (`0 9 1 * mon` = the 1st and every Monday).

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use thiserror::Error;

/// Why a cron expression was refused, phrased for the schedule-file error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CronError {
    #[error("cron expression must have 5 fields (minute hour day month weekday), got {0}")]
    FieldCount(usize),
    #[error("bad {field} field '{text}': {problem}")]
    Field {
        field: &'static str,
        text: String,
        problem: String,
    },
    #[error("unknown cron macro '{0}' (use @yearly, @monthly, @weekly, @daily or @hourly)")]
    Macro(String),
    #[error("cron expression never fires (e.g. February 30th)")]
    Never,
}

/// A parsed cron expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether day-of-month / day-of-week were `*` (decides AND vs OR).
    days_any: bool,
    weekdays_any: bool,
    source: String,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// How far ahead [`Cron::next_after`] looks: 30 years covers every
/// expression that fires at all (Feb 29 on a given weekday recurs in ≤ 28).
const SEARCH_DAYS: u64 = 366 * 30;

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(CronError::Macro(other.to_owned())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let mut weekdays = parse_field(weekday, &WEEKDAY)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let cron = Cron {
            minutes: parse_field(minute, &MINUTE)?,
            hours: parse_field(hour, &HOUR)? as u32,
            days: parse_field(day, &DAY)? as u32,
            months: parse_field(month, &MONTH)? as u16,
            weekdays: weekdays as u8,
            days_any: day.starts_with('*'),
            weekdays_any: weekday.starts_with('*'),
            source: text.trim().to_owned(),
        };
        // Refuse "0 0 30 2 *" now, not by never sending it.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        match probe.and_then(|start| cron.next_after(start, &Tz::UTC)) {
            Some(_) => Ok(cron),
            None => Err(CronError::Never),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let by_day = self.days & (1 << date.day()) != 0;
        let by_weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.days_any, self.weekdays_any) {
            // Vixie cron: both restricted → either one is enough.
            (false, false) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The first instant strictly after `after` at which the expression fires
    /// in `tz`, with the daylight-saving rule in the module docs.
    pub fn next_after(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        // Start at the next whole minute of local wall-clock time. Checked
        // all the way: `after` may come from a state file, and at the edges
        // of chrono's calendar the plain operators panic.
        let offset = tz.offset_from_utc_datetime(&after.naive_utc()).fix();
        let local = after.naive_utc().checked_add_offset(offset)?;
        let start = local
            .with_second(0)?
            .with_nanosecond(0)?
            .checked_add_signed(TimeDelta::minutes(1))?;
        let first_day = start.date();
        for offset in 0..SEARCH_DAYS {
            let date = first_day.checked_add_days(Days::new(offset))?;
            if !self.day_matches(date) {
                continue;
            }
            for hour in bits(u64::from(self.hours), 0, 23) {
                if date == first_day && hour < start.hour() {
                    continue;
                }
                for minute in bits(self.minutes, 0, 59) {
                    if date == first_day && hour == start.hour() && minute < start.minute() {
                        continue;
                    }
                    let wall = NaiveDateTime::new(date, NaiveTime::from_hms_opt(hour, minute, 0)?);
                    // A candidate can still be at or before `after`: the
                    // first 01:30 when `after` is the second one.
                    if let Some(instant) = resolve(wall, tz)
                        && instant > after
                    {
                        return Some(instant);
                    }
                }
            }
        }
        None
    }
}

/// A local wall-clock time as an instant: the earlier of two (fall back), or
/// the moment the clock jumps past a gap (spring forward).
fn resolve(wall: NaiveDateTime, tz: &Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(time) => Some(time.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _second) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // In the gap: the first wall-clock minute that exists is the end
            // of the gap, the instant the clock jumped (offsets change on
            // whole minutes; 48 h covers Samoa's lost day in 2011).
            (1..=48 * 60).find_map(|minutes| {
                let later = wall.checked_add_signed(TimeDelta::minutes(minutes))?;
                match tz.from_local_datetime(&later) {
                    LocalResult::Single(time) => Some(time),
                    LocalResult::Ambiguous(first, _) => Some(first),
                    LocalResult::None => None,
                }
                .map(|time| time.with_timezone(&Utc))
            })
        }
    }
}

/// The set bits of `mask` between `low` and `high`, ascending.
fn bits(mask: u64, low: u32, high: u32) -> impl Iterator<Item = u32> {
    (low..=high).filter(move |bit| mask & (1u64 << bit) != 0)
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let bad = |problem: String| CronError::Field {
        field: spec.name,
        text: text.to_owned(),
        problem,
    };
    let mut mask = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| bad(format!("step '{step}' must be a positive number")))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (
                value(low, spec).map_err(&bad)?,
                value(high, spec).map_err(&bad)?,
            )
        } else {
            let low = value(range, spec).map_err(&bad)?;
            // "5/15" means 5, 20, 35, 50: from 5 to the end.
            (low, if part.contains('/') { spec.max } else { low })
        };
        if low > high {
            return Err(bad(format!("range {low}-{high} is backwards")));
        }
        for v in (low..=high).step_by(step as usize) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = spec.names.iter().position(|name| *name == lower) {
        // Month names count from 1, weekday names from 0 (Sunday).
        return Ok(index as u32 + spec.min);
    }
    let number: u32 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if number < spec.min || number > spec.max {
        return Err(format!(
            "{number} is out of range {}-{}",
            spec.min, spec.max
        ));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Tz, after: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(utc(after), &tz)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn daily_at_nine_shanghai() {
        // 09:00 in Shanghai (UTC+8) is 01:00 UTC.
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(
            next("0 9 * * *", tz, "2026-03-01T00:00:00Z"),
            "2026-03-01T01:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * *", tz, "2026-03-01T01:00:00Z"),
            "2026-03-02T01:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * *", tz, "2026-03-01T00:59:59.9Z"),
            "2026-03-01T01:00:00+00:00"
        );
    }

    /// Found by the `schedule` fuzz target: a state holding a time at the
    /// edge of chrono's calendar panicked in the local-time arithmetic.
    #[test]
    fn the_ends_of_the_calendar_have_no_next_run() {
        let cron = Cron::parse("30 2 * * *").unwrap();
        for tz in [
            chrono_tz::Asia::Shanghai,
            chrono_tz::America::New_York,
            Tz::UTC,
        ] {
            assert_eq!(cron.next_after(DateTime::<Utc>::MAX_UTC, &tz), None);
            // West of UTC the first instant is before the calendar's start
            // in local time; either way, an answer and no panic.
            let _ = cron.next_after(DateTime::<Utc>::MIN_UTC, &tz);
        }
    }

    #[test]
    fn steps_lists_ranges_and_names() {
        let tz = Tz::UTC;
        assert_eq!(
            next("*/15 * * * *", tz, "2026-01-01T10:07:00Z"),
            "2026-01-01T10:15:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", tz, "2026-01-01T10:26:00Z"),
            "2026-01-01T10:45:00+00:00"
        );
        assert_eq!(
            next("0 8-10/2 * * *", tz, "2026-01-01T08:00:00Z"),
            "2026-01-01T10:00:00+00:00"
        );
        // 2026-01-01 is a Thursday: next Monday is the 5th.
        assert_eq!(
            next("0 9 * * mon", tz, "2026-01-01T00:00:00Z"),
            "2026-01-05T09:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * 7", tz, "2026-01-01T00:00:00Z"),
            "2026-01-04T09:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jun *", tz, "2026-01-01T00:00:00Z"),
            "2026-06-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", tz, "2026-01-01T00:00:00Z"),
            "2026-01-01T01:00:00+00:00"
        );
    }

    #[test]
    fn day_of_month_or_weekday_when_both_restricted() {
        // The 15th, or any Monday: from Thu 2026-01-01 the first is Mon the 5th.
        assert_eq!(
            next("0 0 15 * 1", Tz::UTC, "2026-01-01T00:00:00Z"),
            "2026-01-05T00:00:00+00:00"
        );
    }

    #[test]
    fn month_ends_skip_short_months() {
        let tz = Tz::UTC;
        // After January 31st the next 31st is March 31st.
        assert_eq!(
            next("0 9 31 * *", tz, "2026-01-31T09:00:00Z"),
            "2026-03-31T09:00:00+00:00"
        );
        // And after March 31st, May 31st (April has 30 days).
        assert_eq!(
            next("0 9 31 * *", tz, "2026-03-31T09:00:00Z"),
            "2026-05-31T09:00:00+00:00"
        );
        // February 29th: the next leap year.
        assert_eq!(
            next("0 0 29 2 *", tz, "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_when_the_clock_jumps() {
        let tz = chrono_tz::America::New_York;
        // 2026-03-08: 02:00 EST → 03:00 EDT (07:00 UTC). 02:30 does not exist.
        let slot = next("30 2 * * *", tz, "2026-03-08T05:00:00Z");
        assert_eq!(slot, "2026-03-08T07:00:00+00:00");
        // The next run is the next day's 02:30 EDT, not a second one today.
        assert_eq!(next("30 2 * * *", tz, &slot), "2026-03-09T06:30:00+00:00");
        // Every 30 minutes across the gap: 01:30 EST, then the jump (03:00 EDT),
        // then 03:30 EDT — 02:00 and 02:30 fold into the jump.
        assert_eq!(
            next("*/30 * * * *", tz, "2026-03-08T06:00:00Z"),
            "2026-03-08T06:30:00+00:00"
        );
        assert_eq!(
            next("*/30 * * * *", tz, "2026-03-08T06:30:00Z"),
            "2026-03-08T07:00:00+00:00"
        );
        assert_eq!(
            next("*/30 * * * *", tz, "2026-03-08T07:00:00Z"),
            "2026-03-08T07:30:00+00:00"
        );
    }

    #[test]
    fn fall_back_overlap_runs_once_at_the_first_occurrence() {
        let tz = chrono_tz::America::New_York;
        // 2026-11-01: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC).
        let first = next("30 1 * * *", tz, "2026-11-01T04:00:00Z");
        assert_eq!(first, "2026-11-01T05:30:00+00:00");
        // Not again at 01:30 EST: tomorrow.
        assert_eq!(next("30 1 * * *", tz, &first), "2026-11-02T06:30:00+00:00");
        // Starting inside the second 01:xx hour does not re-run the first 01:30.
        assert_eq!(
            next("30 1 * * *", tz, "2026-11-01T06:10:00Z"),
            "2026-11-02T06:30:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let error = |expr: &str| Cron::parse(expr).unwrap_err().to_string();
        assert!(error("0 9 * *").contains("5 fields"));
        assert!(error("61 * * * *").contains("minute field '61': 61 is out of range 0-59"));
        assert!(error("0 9 * * funday").contains("'funday' is not a number"));
        assert!(error("*/0 * * * *").contains("step"));
        assert!(error("0 0 30 2 *").contains("never fires"));
        assert!(error("@sometimes").contains("unknown cron macro"));
        assert!(error("5-1 * * * *").contains("backwards"));
    }
}

//! Fuzz target: a cron expression (`beat::cron::Cron::parse`) and its next
//! run after any instant, in any time zone.
//!
//! Properties: nothing panics; a next run is strictly after the instant
//! asked about; parsing the expression as written again gives the same
//! expression.

#![no_main]

use arbitrary::Arbitrary;
use celery_core::beat::cron::Cron;
use chrono::DateTime;
use chrono_tz::{TZ_VARIANTS, Tz};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    expression: &'a str,
    /// Seconds since the epoch; anything chrono can hold.
    after: i64,
    zone: u16,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(cron) = Cron::parse(input.expression) else {
        return;
    };
    assert_eq!(Cron::parse(cron.source()).ok(), Some(cron.clone()));
    let zone: Tz = TZ_VARIANTS[usize::from(input.zone) % TZ_VARIANTS.len()];
    let Some(after) = DateTime::from_timestamp(input.after, 0) else {
        return;
    };
    if let Some(next) = cron.next_after(after, &zone) {
        assert!(
            next > after,
            "{next} is not after {after} ({cron:?} in {zone})"
        );
    }
});

// The logic of the fuzz target `cron` (see `fuzz_targets/cron.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use arbitrary::Arbitrary;
use celery_core::beat::cron::Cron;
use chrono::DateTime;
use chrono_tz::{TZ_VARIANTS, Tz};

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

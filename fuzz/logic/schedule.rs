// The logic of the fuzz target `schedule` (see `fuzz_targets/schedule.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use celery_core::beat::{
    beat_message,
    schedule::parse,
    scheduler::{State, plan},
};
use chrono::{DateTime, Utc};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(schedule) = parse(text, "fuzz.toml", "fuzz") else {
        return;
    };
    let now = Utc::now();
    let times = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::UNIX_EPOCH,
        now,
        DateTime::<Utc>::MAX_UTC,
    ];
    let mut state = State::new();
    for (index, entry) in schedule.entries.iter().enumerate() {
        for after in times {
            if let Some(next) = entry.timing.next_after(after) {
                assert!(next > after, "{} is not after {after}", next);
            }
        }
        let _ = beat_message(entry);
        state.insert(entry.name.clone(), times[index % times.len()]);
    }
    let _ = plan(&schedule, &State::new(), now);
    let _ = plan(&schedule, &state, now);
});

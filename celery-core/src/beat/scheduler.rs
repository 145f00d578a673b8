//! The beat tick, as a pure function: given the schedule, what was last sent
//! and the time `now`, which slots are due, what to skip, and when to wake.
//!
//! No clock, no broker, no sleep: the caller passes `now` and carries out the
//! [`Plan`], so the tests drive months of simulated time in microseconds.
//!
//! # Slots and state
//!
//! Every entry has *slots*, the instants it should run (see
//! [`Timing::next_after`](super::schedule::Timing::next_after)). The state
//! holds, per entry, the last slot that was dealt with (sent, or skipped on
//! purpose). The due slots are those after it and not after `now`. An entry
//! with no state yet starts counting at `now`: its first slot is the next one.
//!
//! # Missed slots (`catch_up`)
//!
//! When more than one slot is due (beat was down, or a standby just took
//! over), [`CatchUp`] decides: `once` sends the most recent slot only, `all`
//! sends each (at most `catch_up_limit`, the most recent), `none` sends only a
//! slot that is on time (at most [`ON_TIME`] late) and skips the rest. Skips
//! and folds are reported as [`Note`]s, so they are logged, never silent.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use super::schedule::{CatchUp, Schedule};

/// Last slot dealt with, per entry name.
pub type State = BTreeMap<String, DateTime<Utc>>;

/// How late a slot may be sent and still count as on time with
/// `catch_up = "none"`: a tick runs milliseconds after its slot, but a slow
/// send or a busy host must not turn the current slot into a "missed" one.
pub const ON_TIME: TimeDelta = TimeDelta::seconds(2);

/// How far back missed slots are counted. Bounds the work after a very long
/// outage (a per-minute cron over 31 days is 45,000 slots).
pub const LOOKBACK: TimeDelta = TimeDelta::days(31);

/// One message to send: entry index in `schedule.entries`, and its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub entry: usize,
    pub slot: DateTime<Utc>,
}

/// Something the log should say about an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// First time this entry is seen: its slots count from now.
    New { entry: usize },
    /// `count` slots from `first` to `last` will not be sent.
    Skipped {
        entry: usize,
        count: u64,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    },
    /// `count` due slots are sent as one message (`catch_up = "once"`).
    Folded { entry: usize, count: u64 },
}

/// What the caller does this tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// State to record before sending (new entries, slots skipped with no
    /// send after them).
    pub advance: Vec<(usize, DateTime<Utc>)>,
    /// Messages to send, oldest slot first per entry. After each confirmed
    /// send, record its slot as the entry's state.
    pub send: Vec<Due>,
    pub notes: Vec<Note>,
    /// The earliest future slot of any entry: when to tick next.
    pub next_wake: Option<DateTime<Utc>>,
}

/// Works out one tick.
pub fn plan(schedule: &Schedule, state: &State, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    for (index, entry) in schedule.entries.iter().enumerate() {
        let timing = &entry.timing;
        let Some(&last) = state.get(&entry.name) else {
            plan.advance.push((index, now));
            plan.notes.push(Note::New { entry: index });
            wake(&mut plan, timing.next_after(now));
            continue;
        };

        // Walk the due slots, keeping the count, the first, and the most
        // recent `keep` (and the one just before those, for the log).
        let keep = match schedule.catch_up {
            CatchUp::All => schedule.catch_up_limit.max(1),
            CatchUp::Once | CatchUp::None => 1,
        };
        let mut count = 0u64;
        let mut first = None;
        let mut recent: VecDeque<DateTime<Utc>> = VecDeque::with_capacity(keep);
        let mut dropped_last = None;
        let mut cursor = last.max(now - LOOKBACK);
        let upcoming = loop {
            match timing.next_after(cursor) {
                Some(slot) if slot <= now => {
                    count += 1;
                    first.get_or_insert(slot);
                    if recent.len() == keep {
                        dropped_last = recent.pop_front();
                    }
                    recent.push_back(slot);
                    cursor = slot;
                }
                other => break other,
            }
        };
        wake(&mut plan, upcoming);
        let (Some(first), Some(&latest)) = (first, recent.back()) else {
            continue;
        };

        match schedule.catch_up {
            CatchUp::Once => {
                if count > 1 {
                    plan.notes.push(Note::Folded {
                        entry: index,
                        count,
                    });
                }
                plan.send.push(Due {
                    entry: index,
                    slot: latest,
                });
            }
            CatchUp::All => {
                if let Some(dropped_last) = dropped_last {
                    plan.notes.push(Note::Skipped {
                        entry: index,
                        count: count - recent.len() as u64,
                        first,
                        last: dropped_last,
                    });
                }
                plan.send
                    .extend(recent.iter().map(|&slot| Due { entry: index, slot }));
            }
            CatchUp::None => {
                let on_time = now - latest <= ON_TIME;
                let skipped = if on_time { count - 1 } else { count };
                if skipped > 0 {
                    // The last skipped slot: the latest, or the one before it
                    // (found again; only on this rare path).
                    let last_skipped = if on_time {
                        previous_slot(timing, first, latest)
                    } else {
                        latest
                    };
                    plan.notes.push(Note::Skipped {
                        entry: index,
                        count: skipped,
                        first,
                        last: last_skipped,
                    });
                }
                if on_time {
                    plan.send.push(Due {
                        entry: index,
                        slot: latest,
                    });
                } else {
                    plan.advance.push((index, latest));
                }
            }
        }
    }
    plan
}

fn wake(plan: &mut Plan, slot: Option<DateTime<Utc>>) {
    if let Some(slot) = slot {
        plan.next_wake = Some(plan.next_wake.map_or(slot, |wake| wake.min(slot)));
    }
}

/// The slot before `slot`, searching forward from `first` (which is before it).
fn previous_slot(
    timing: &super::schedule::Timing,
    first: DateTime<Utc>,
    slot: DateTime<Utc>,
) -> DateTime<Utc> {
    let mut previous = first;
    while let Some(next) = timing.next_after(previous) {
        if next >= slot {
            break;
        }
        previous = next;
    }
    previous
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::beat::schedule::parse;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn schedule(catch_up: &str, entries: &str) -> Schedule {
        let text = format!("catch_up = \"{catch_up}\"\ncatch_up_limit = 3\n{entries}");
        parse(&text, "test.toml", "test").unwrap()
    }

    const EVERY_10: &str = "[entries.tick]\ntask = \"noop\"\nevery = 10\n";

    /// Runs beat over simulated time: tick, "send" (record), jump to the
    /// next wake. Returns the slots sent.
    fn simulate(
        schedule: &Schedule,
        state: &mut State,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>)> {
        let mut sent = Vec::new();
        let mut now = from;
        while now <= until {
            let plan = plan(schedule, state, now);
            for (entry, slot) in plan.advance {
                state.insert(schedule.entries[entry].name.clone(), slot);
            }
            for due in plan.send {
                let name = schedule.entries[due.entry].name.clone();
                sent.push((name.clone(), due.slot));
                state.insert(name, due.slot);
            }
            // A tick runs a little after its slot, as a real timer does.
            now = plan.next_wake.unwrap() + TimeDelta::milliseconds(3);
        }
        sent
    }

    #[test]
    fn interval_entry_runs_on_each_slot_once() {
        let schedule = schedule("once", EVERY_10);
        let mut state = State::new();
        let sent = simulate(
            &schedule,
            &mut state,
            at("2026-01-01T00:00:05Z"),
            at("2026-01-01T00:01:01Z"),
        );
        let slots: Vec<String> = sent
            .iter()
            .map(|(_, slot)| slot.format("%M:%S").to_string())
            .collect();
        assert_eq!(
            slots,
            ["00:10", "00:20", "00:30", "00:40", "00:50", "01:00"]
        );
    }

    #[test]
    fn a_new_entry_starts_at_its_next_slot() {
        let schedule = schedule("once", EVERY_10);
        let plan = plan(&schedule, &State::new(), at("2026-01-01T00:00:05Z"));
        assert!(plan.send.is_empty());
        assert_eq!(plan.advance, [(0, at("2026-01-01T00:00:05Z"))]);
        assert_eq!(plan.notes, [Note::New { entry: 0 }]);
        assert_eq!(plan.next_wake, Some(at("2026-01-01T00:00:10Z")));
    }

    #[test]
    fn restart_does_not_resend_the_same_slot() {
        let schedule = schedule("once", EVERY_10);
        let state = State::from([("tick".to_owned(), at("2026-01-01T00:00:10Z"))]);
        // Restarted one second after sending the 00:10 slot.
        let plan = plan(&schedule, &state, at("2026-01-01T00:00:11Z"));
        assert!(plan.send.is_empty());
        assert!(plan.notes.is_empty());
        assert_eq!(plan.next_wake, Some(at("2026-01-01T00:00:20Z")));
    }

    #[test]
    fn catch_up_once_folds_missed_slots_into_one() {
        let schedule = schedule("once", EVERY_10);
        let state = State::from([("tick".to_owned(), at("2026-01-01T00:00:10Z"))]);
        // Down from 00:10 to 00:55: 00:20, 00:30, 00:40, 00:50 missed.
        let plan = plan(&schedule, &state, at("2026-01-01T00:00:55Z"));
        assert_eq!(
            plan.send,
            [Due {
                entry: 0,
                slot: at("2026-01-01T00:00:50Z")
            }]
        );
        assert_eq!(plan.notes, [Note::Folded { entry: 0, count: 4 }]);
        assert_eq!(plan.next_wake, Some(at("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn catch_up_all_sends_each_missed_slot_up_to_the_limit() {
        let schedule = schedule("all", EVERY_10);
        let state = State::from([("tick".to_owned(), at("2026-01-01T00:00:10Z"))]);
        let plan = plan(&schedule, &state, at("2026-01-01T00:00:55Z"));
        // Limit 3: the most recent three are sent, oldest first.
        let slots: Vec<_> = plan.send.iter().map(|due| due.slot).collect();
        assert_eq!(
            slots,
            [
                at("2026-01-01T00:00:30Z"),
                at("2026-01-01T00:00:40Z"),
                at("2026-01-01T00:00:50Z")
            ]
        );
        assert_eq!(
            plan.notes,
            [Note::Skipped {
                entry: 0,
                count: 1,
                first: at("2026-01-01T00:00:20Z"),
                last: at("2026-01-01T00:00:20Z")
            }]
        );
    }

    #[test]
    fn catch_up_none_skips_missed_slots_and_says_so() {
        let schedule = schedule("none", EVERY_10);
        let state = State::from([("tick".to_owned(), at("2026-01-01T00:00:10Z"))]);
        // 5 s after the 00:50 slot: it is late too, so everything is skipped.
        let plan = plan(&schedule, &state, at("2026-01-01T00:00:55Z"));
        assert!(plan.send.is_empty());
        assert_eq!(plan.advance, [(0, at("2026-01-01T00:00:50Z"))]);
        assert_eq!(
            plan.notes,
            [Note::Skipped {
                entry: 0,
                count: 4,
                first: at("2026-01-01T00:00:20Z"),
                last: at("2026-01-01T00:00:50Z")
            }]
        );
        // Right on a slot: that one is sent, the older ones skipped.
        let plan2 = super::plan(&schedule, &state, at("2026-01-01T00:00:50.5Z"));
        assert_eq!(
            plan2.send,
            [Due {
                entry: 0,
                slot: at("2026-01-01T00:00:50Z")
            }]
        );
        assert_eq!(
            plan2.notes,
            [Note::Skipped {
                entry: 0,
                count: 3,
                first: at("2026-01-01T00:00:20Z"),
                last: at("2026-01-01T00:00:40Z")
            }]
        );
    }

    #[test]
    fn on_time_ticks_never_count_as_missed() {
        // Normal running in "none" mode sends every slot.
        let schedule = schedule("none", EVERY_10);
        let mut state = State::new();
        let sent = simulate(
            &schedule,
            &mut state,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:59Z"),
        );
        assert_eq!(sent.len(), 5);
    }

    #[test]
    fn cron_daily_report_in_shanghai_over_a_month_end() {
        let schedule = schedule(
            "once",
            "[entries.report]\ntask = \"SMS\"\ncron = \"0 9 31 * *\"\ntimezone = \"Asia/Shanghai\"\n",
        );
        let mut state = State::new();
        let sent = simulate(
            &schedule,
            &mut state,
            at("2026-01-01T00:00:00Z"),
            at("2026-08-01T00:00:00Z"),
        );
        let days: Vec<String> = sent.iter().map(|(_, slot)| slot.to_rfc3339()).collect();
        // 09:00 Shanghai = 01:00 UTC, on the months that have a 31st.
        assert_eq!(
            days,
            [
                "2026-01-31T01:00:00+00:00",
                "2026-03-31T01:00:00+00:00",
                "2026-05-31T01:00:00+00:00",
                "2026-07-31T01:00:00+00:00"
            ]
        );
    }

    #[test]
    fn dst_days_send_each_daily_slot_exactly_once() {
        let schedule = schedule(
            "once",
            "timezone = \"America/New_York\"\n[entries.gap]\ntask = \"a\"\ncron = \"30 2 * * *\"\n[entries.overlap]\ntask = \"b\"\ncron = \"30 1 * * *\"\n",
        );
        let mut state = State::new();
        let sent = simulate(
            &schedule,
            &mut state,
            at("2026-03-07T00:00:00Z"),
            at("2026-03-10T00:00:00Z"),
        );
        let gap: Vec<String> = sent
            .iter()
            .filter(|(name, _)| name == "gap")
            .map(|(_, slot)| slot.to_rfc3339())
            .collect();
        // 7th: 02:30 EST; 8th: no 02:30, sent at the jump (03:00 EDT); 9th: 02:30 EDT.
        assert_eq!(
            gap,
            [
                "2026-03-07T07:30:00+00:00",
                "2026-03-08T07:00:00+00:00",
                "2026-03-09T06:30:00+00:00"
            ]
        );
        let mut state = State::new();
        let sent = simulate(
            &schedule,
            &mut state,
            at("2026-10-31T00:00:00Z"),
            at("2026-11-03T00:00:00Z"),
        );
        let overlap: Vec<String> = sent
            .iter()
            .filter(|(name, _)| name == "overlap")
            .map(|(_, slot)| slot.to_rfc3339())
            .collect();
        // 1st of November: 01:30 happens twice; sent once, at 01:30 EDT.
        assert_eq!(
            overlap,
            [
                "2026-10-31T05:30:00+00:00",
                "2026-11-01T05:30:00+00:00",
                "2026-11-02T06:30:00+00:00"
            ]
        );
    }

    #[test]
    fn next_wake_is_the_earliest_entry() {
        let schedule = schedule(
            "once",
            "[entries.a]\ntask = \"a\"\nevery = 30\n[entries.b]\ntask = \"b\"\nevery = 7\n",
        );
        let plan = plan(&schedule, &State::new(), at("2026-01-01T00:00:00Z"));
        assert_eq!(plan.next_wake, Some(at("2026-01-01T00:00:07Z")));
    }

    #[test]
    fn a_very_long_outage_is_bounded() {
        let schedule = schedule("once", "[entries.a]\ntask = \"a\"\nevery = 1\n");
        let state = State::from([("a".to_owned(), at("2020-01-01T00:00:00Z"))]);
        let plan = plan(&schedule, &state, at("2026-01-01T00:00:00Z"));
        assert_eq!(
            plan.send,
            [Due {
                entry: 0,
                slot: at("2026-01-01T00:00:00Z")
            }]
        );
        assert!(matches!(plan.notes[..], [Note::Folded { count, .. }] if count == 31 * 86_400));
    }
}

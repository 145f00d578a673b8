//! Beat against the real brokers: tasks arrive on schedule, a restart or a
//! second beat sends no slot twice, a killed leader is replaced within one
//! lease period, `worker -B` and a Python worker run beat's tasks, and a bad
//! schedule file fails with `file:line`.
//!
//! Each test writes its own schedule (unique name → unique lease and state
//! keys) and sends to its own queue; every wait is bounded. The schedule
//! logic itself (DST, month ends, catch-up, lease hand-over) is unit-tested
//! with simulated time in `src/beat/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use chrono::NaiveDateTime;
use common::{Kind, PrivateRedis, Process, REDIS_BROKER, WAIT, WORKER, redis, unique_name};
use lapin::options::BasicGetOptions;
use serde_json::Value;
use tokio::{
    process::Command,
    time::{Instant, sleep},
};

/// A beat process and its log (stderr), line by line.
/// A running `beat` process (its log collected by the harness's [`Process`]).
struct Beat {
    process: Process,
}

impl Beat {
    fn start(kind: Kind, schedule: &Schedule, extra: &[&str]) -> Beat {
        Beat::start_with_lease(kind, REDIS_BROKER, schedule, extra)
    }

    fn start_with_lease(kind: Kind, lease: &str, schedule: &Schedule, extra: &[&str]) -> Beat {
        let mut command = Command::new(WORKER);
        command
            .args(["beat", "-l", "info", "--broker", &kind.broker()])
            .args(["--lease-redis", lease, "--schedule"])
            .arg(&schedule.path)
            .args(extra)
            .env_remove("CELERY_BROKER_URL");
        Beat {
            process: Process::spawn(command),
        }
    }

    fn log(&self) -> Vec<String> {
        self.process.log()
    }

    async fn wait_for(&self, needle: &str, within: Duration) {
        self.process.wait_for_log(needle, 1, within).await;
    }

    fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// SIGINT, then wait (bounded) for a clean exit.
    async fn stop(mut self) -> Vec<String> {
        self.process.signal("-INT");
        let code = self.process.wait().await;
        assert_eq!(code, Some(0), "beat failed: {}", self.log().join("\n"));
        self.log()
    }

    /// The `(slot, sent at)` of every "Sending due task" line.
    fn sends(&self) -> Vec<(String, NaiveDateTime)> {
        sends(&self.log())
    }
}

fn sends(log: &[String]) -> Vec<(String, NaiveDateTime)> {
    log.iter()
        .filter(|line| line.contains("Scheduler: Sending due task"))
        .map(|line| {
            let stamp = &line[1..24];
            let at = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S,%3f").unwrap();
            let slot = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("slot="))
                .unwrap()
                .to_owned();
            (slot, at)
        })
        .collect()
}

/// A schedule file in the temp dir, removed with its Redis keys on drop.
struct Schedule {
    name: String,
    path: PathBuf,
}

impl Schedule {
    fn new(body: &str) -> Schedule {
        let name = unique_name("beat-test");
        let path = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&path, format!("name = \"{name}\"\n{body}")).unwrap();
        Schedule { name, path }
    }

    fn every_second(queue: &str) -> Schedule {
        Schedule::new(&format!(
            "[entries.tick]\ntask = \"noop\"\nevery = 1\nqueue = \"{queue}\"\nexpires = 60\n"
        ))
    }

    async fn clean(&self) {
        let mut connection = redis(REDIS_BROKER).await;
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(format!("beat:{}:lease", self.name))
            .arg(format!("beat:{}:state", self.name))
            .query_async(&mut connection)
            .await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes every message from `queue` and returns its headers.
/// Waits (bounded) until the Redis queue holds at least `count` messages.
async fn wait_queued(queue: &str, count: usize) {
    let mut connection = redis(REDIS_BROKER).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let queued: usize = redis::cmd("LLEN")
            .arg(queue)
            .query_async(&mut connection)
            .await
            .unwrap();
        if queued >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} never got {count} messages"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

async fn drain(kind: Kind, queue: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut headers = Vec::new();
    match kind {
        Kind::Redis => {
            let mut connection = redis(REDIS_BROKER).await;
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(queue)
                .arg(0)
                .arg(-1)
                .query_async(&mut connection)
                .await
                .unwrap();
            for text in raw.iter().rev() {
                let envelope: Value = serde_json::from_str(text).unwrap();
                headers.push(envelope["headers"].as_object().unwrap().clone());
            }
        }
        Kind::Amqp => {
            let connection = shared::testing::test_connection().await;
            let channel = connection.create_channel().await.unwrap();
            while let Some(message) = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                headers.push(celery_core::protocol::amqp_table::from_field_table(
                    message.delivery.properties.headers().as_ref().unwrap(),
                ));
            }
            let _ = connection.close(200, "bye".into()).await;
        }
    }
    common::delete_queue(kind, queue).await;
    headers
}

fn assert_unique_slots(sends: &[(String, NaiveDateTime)]) {
    let slots: BTreeSet<&String> = sends.iter().map(|(slot, _)| slot).collect();
    assert_eq!(slots.len(), sends.len(), "a slot was sent twice: {sends:?}");
}

async fn arrives_on_schedule(kind: Kind) {
    let queue = unique_name("beat-every");
    let schedule = Schedule::every_second(&queue);
    let beat = Beat::start(kind, &schedule, &["--lease-ttl", "2"]);
    beat.wait_for("acquired the lease", WAIT).await;
    sleep(Duration::from_millis(4200)).await;
    let log = beat.stop().await;
    let sent = sends(&log);
    let headers = drain(kind, &queue).await;
    schedule.clean().await;

    assert!(
        (3..=5).contains(&sent.len()),
        "expected 3–5 sends in ~4 s: {sent:?}"
    );
    assert_eq!(headers.len(), sent.len(), "log and queue disagree");
    for header in &headers {
        assert_eq!(header["celery_beat_task"], Value::Bool(true));
        assert_eq!(header["task"], "noop");
        assert_eq!(header["argsrepr"], "[]");
        assert!(header["expires"].is_string());
    }
    assert_unique_slots(&sent);
    for pair in sent.windows(2) {
        let gap = (pair[1].1 - pair[0].1).num_milliseconds();
        assert!(
            (700..=1300).contains(&gap),
            "sends {gap} ms apart: {sent:?}"
        );
    }
}

#[tokio::test]
async fn every_second_arrives_on_schedule_on_redis() {
    arrives_on_schedule(Kind::Redis).await;
}

#[tokio::test]
async fn every_second_arrives_on_schedule_on_rabbitmq() {
    arrives_on_schedule(Kind::Amqp).await;
}

/// Beat's lease Redis crashes and comes back: beat stops sending (it cannot
/// prove it leads), says so once rather than every tick, and sends again
/// once the lease is its own again.
#[tokio::test]
async fn a_lease_redis_outage_is_logged_once_and_beat_goes_on() {
    let mut lease = PrivateRedis::start().await;
    let queue = unique_name("beat-lease-outage");
    let schedule = Schedule::every_second(&queue);
    let beat = Beat::start_with_lease(Kind::Redis, &lease.url(0), &schedule, &["--lease-ttl", "2"]);
    beat.wait_for("Sending due task", WAIT).await;
    lease.crash().await;
    sleep(Duration::from_secs(4)).await;
    lease.restart().await;
    beat.wait_for("re-established after", WAIT).await;
    let sent_before = beat.sends().len();
    let deadline = Instant::now() + WAIT;
    while beat.sends().len() < sent_before + 2 {
        assert!(
            Instant::now() < deadline,
            "beat did not send again:\n{}",
            beat.log().join("\n")
        );
        sleep(Duration::from_millis(100)).await;
    }
    let log = beat.stop().await;
    drain(Kind::Redis, &queue).await;
    schedule.clean().await;
    let lost: Vec<&String> = log
        .iter()
        .filter(|line| {
            line.contains("WARNING") && line.contains("Connection to beat's lease Redis at")
        })
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "one warning for the outage:\n{}",
        log.join("\n")
    );
    let warnings = log.iter().filter(|line| line.contains("WARNING")).count();
    assert!(warnings <= 3, "a flood of warnings:\n{}", log.join("\n"));
}

#[tokio::test]
async fn a_restart_sends_no_slot_twice() {
    let queue = unique_name("beat-restart");
    let schedule = Schedule::every_second(&queue);
    let mut all = Vec::new();
    for _ in 0..2 {
        let beat = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
        // Stop right after a send, the moment a duplicate is most likely.
        beat.wait_for("Sending due task", WAIT).await;
        sleep(Duration::from_millis(1100)).await;
        all.extend(sends(&beat.stop().await));
    }
    let headers = drain(Kind::Redis, &queue).await;
    schedule.clean().await;
    assert!(all.len() >= 4, "{all:?}");
    assert_unique_slots(&all);
    assert_eq!(headers.len(), all.len());
}

#[tokio::test]
async fn two_beats_send_each_slot_once() {
    let queue = unique_name("beat-two");
    let schedule = Schedule::every_second(&queue);
    let first = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
    let second = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
    sleep(Duration::from_millis(4000)).await;
    // Before stopping: once the leader releases the lease on shutdown, the
    // other may (rightly) take it for its last moments.
    let running = [first.log(), second.log()];
    let leaders = running
        .iter()
        .filter(|log| log.iter().any(|line| line.contains("acquired the lease")))
        .count();
    assert_eq!(leaders, 1, "exactly one beat leads");
    assert!(
        running
            .iter()
            .any(|log| log.iter().any(|line| line.contains("standing by")))
    );
    let (first, second) = tokio::join!(first.stop(), second.stop());
    let headers = drain(Kind::Redis, &queue).await;
    schedule.clean().await;

    let mut all = sends(&first);
    all.extend(sends(&second));
    assert!((3..=5).contains(&all.len()), "{all:?}");
    assert_unique_slots(&all);
    assert_eq!(headers.len(), all.len());
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_one_lease_period() {
    let queue = unique_name("beat-kill");
    let schedule = Schedule::every_second(&queue);
    let ttl = Duration::from_secs(2);
    let leader = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
    leader.wait_for("acquired the lease", WAIT).await;
    let standby = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
    standby.wait_for("standing by", WAIT).await;
    leader.wait_for("Sending due task", WAIT).await;
    // Logged before it is sent: killed between the two, the send would be
    // counted below but never arrive. Kill it once the message is there.
    wait_queued(&queue, 1).await;

    leader.signal("-KILL");
    let killed = Instant::now();
    // One lease period, plus the time for a process to log it.
    standby
        .wait_for("acquired the lease", ttl + Duration::from_millis(500))
        .await;
    let took_over = killed.elapsed();
    standby.wait_for("Sending due task", WAIT).await;
    let mut all = leader.sends();
    let standby_log = standby.stop().await;
    all.extend(sends(&standby_log));
    let headers = drain(Kind::Redis, &queue).await;
    schedule.clean().await;

    assert!(
        took_over <= ttl + Duration::from_millis(500),
        "{took_over:?}"
    );
    assert_unique_slots(&all);
    assert_eq!(headers.len(), all.len());
}

#[tokio::test]
async fn worker_dash_b_runs_beats_tasks() {
    let queue = unique_name("beat-worker");
    let schedule = Schedule::every_second(&queue);
    let path = schedule.path.to_string_lossy().into_owned();
    let mut worker = common::start_worker(
        Kind::Redis,
        &queue,
        &["-B", "--schedule", &path, "--lease-ttl", "2"],
        &[],
    )
    .await;
    worker.wait_for_log("] succeeded in ", 2, WAIT).await;
    assert!(
        worker
            .log_text()
            .contains("Scheduler: Sending due task tick (noop)")
    );
    worker.signal("-INT");
    assert_eq!(worker.wait().await, Some(0));
    assert!(worker.log_text().contains("beat: released the lease"));
    common::delete_queue(Kind::Redis, &queue).await;
    schedule.clean().await;
}

#[tokio::test]
async fn a_python_worker_runs_beats_tasks() {
    let queue = unique_name("beat-python");
    let schedule = Schedule::new(&format!(
        "[entries.sms]\ntask = \"SMS\"\nargs = [\"13800000000\", \"beat\"]\nevery = 1\nqueue = \"{queue}\"\n"
    ));
    let record_key = unique_name("beat-sms-record");
    let mut worker = common::start_python_worker(
        Kind::Redis,
        &queue,
        &[
            ("SMS_RECORD_KEY", record_key.as_str()),
            ("SMS_RECORD_REDIS", common::RESULTS),
        ],
    )
    .await;
    let beat = Beat::start(Kind::Redis, &schedule, &["--lease-ttl", "2"]);
    worker.wait_for_log("] succeeded in ", 1, WAIT).await;
    beat.stop().await;
    worker.signal("-TERM");
    worker.wait().await;
    common::delete_queue(Kind::Redis, &queue).await;
    schedule.clean().await;

    // The blog's task really ran in Python, with beat's arguments.
    let mut connection = redis(common::RESULTS).await;
    let records: Vec<String> = redis::cmd("LRANGE")
        .arg(&record_key)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(&record_key)
        .query_async(&mut connection)
        .await;
    // kombu's bindings for the queue, left by the Python worker.
    let mut broker = redis(REDIS_BROKER).await;
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(format!("_kombu.binding.{queue}"))
        .arg(format!("_kombu.binding_permanent.{queue}"))
        .query_async(&mut broker)
        .await;
    let record: Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(record["mobile"], "13800000000");
    assert_eq!(record["datas"][0], "beat");
}

#[tokio::test]
async fn a_bad_schedule_fails_with_file_and_line() {
    for (body, line, problem) in [
        (
            "[entries.a]\ntask = \"x\"\ncron = \"0 9 * *\"\n",
            4,
            "must have 5 fields",
        ),
        (
            "[entries.a]\ntask = \"x\"\nevery = 1\nqueu = \"q\"\n",
            5,
            "queu",
        ),
        (
            "timezone = \"Asia/Shangai\"\n[entries.a]\ntask = \"x\"\nevery = 1\n",
            2,
            "unknown time zone",
        ),
        (
            "[entries.a]\ntask = \"x\"\nevery = 1\n[entries.a]\ntask = \"y\"\nevery = 2\n",
            5,
            "duplicate",
        ),
    ] {
        let schedule = Schedule::new(body);
        let path = schedule.path.to_string_lossy().into_owned();
        let (code, _, stderr) = common::run_cli(&["beat", "--schedule", &path]).await;
        schedule.clean().await;
        assert_eq!(code, Some(1), "{stderr}");
        let message = stderr.trim();
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(&format!("{path}:{line}: ")), "{message}");
        assert!(message.contains(problem), "{message}");
    }
}

/// The sample schedule the README starts beat with parses, as documented.
#[test]
fn the_sample_schedule_file_parses() {
    use celery_core::beat::schedule::{CatchUp, Timing, parse};
    let text = include_str!("../../beat-schedule.toml");
    let schedule = parse(text, "beat-schedule.toml", "beat-schedule").unwrap();
    assert_eq!(schedule.catch_up, CatchUp::Once);
    assert_eq!(schedule.entries.len(), 2);
    let report = schedule
        .entries
        .iter()
        .find(|entry| entry.task == "SMS")
        .unwrap();
    assert_eq!(report.args.len(), 2);
    assert!(matches!(&report.timing, Timing::Cron { tz, .. } if *tz == chrono_tz::Asia::Shanghai));
    let cleanup = schedule
        .entries
        .iter()
        .find(|entry| entry.task != "SMS")
        .unwrap();
    assert!(matches!(cleanup.timing, Timing::Every(period) if period == Duration::from_secs(30)));
}

//! Redis behind Sentinel: the worker and `send` follow a failover, Python
//! Celery shares the same master through kombu's `sentinel://` transport,
//! and what asynchronous replication lost is counted, not guessed.
//!
//! Each test starts a set-up of its own with `scripts/sentinel` (master,
//! replica, three sentinels) on ports derived from the test process's id,
//! and stops it at the end: killing its master disturbs nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use common::*;
use tokio::time::{Instant, sleep};

const MASTER: &str = "mymaster";

/// A master, a replica and three sentinels of the test's own.
struct SentinelSetup {
    dir: PathBuf,
    redis_port: u16,
    sentinel_port: u16,
}

impl SentinelSetup {
    /// `slot` tells a test's set-up from another's in the same process.
    fn start(slot: u16) -> SentinelSetup {
        // Ten ports a set-up, per process and slot, below the ephemeral range.
        let base = 17_000 + (std::process::id() % 300) as u16 * 20 + slot * 10;
        let setup = SentinelSetup {
            dir: std::env::temp_dir().join(unique_name("sentinel")),
            redis_port: base,
            sentinel_port: base + 5,
        };
        setup.script("start");
        setup
    }

    /// `scripts/sentinel COMMAND` for this set-up.
    fn command(&self, command: &str) -> std::process::Command {
        let mut script = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/sentinel"),
        );
        script
            .arg(command)
            .env("SENTINEL_DIR", &self.dir)
            .env("SENTINEL_BASE_PORT", self.redis_port.to_string())
            .env("SENTINEL_PORT", self.sentinel_port.to_string())
            .env("SENTINEL_MASTER", MASTER);
        script
    }

    fn script(&self, command: &str) -> String {
        let output = self.command(command).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "scripts/sentinel {command}: {stderr}"
        );
        stderr
    }

    /// The sentinels, as kombu and our `--broker` take them. Celery reads
    /// the database from the first URL: it is written on each.
    fn url(&self, db: u32) -> String {
        (0..3)
            .map(|n| format!("sentinel://127.0.0.1:{}/{db}", self.sentinel_port + n))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// A plain connection to one of the two Redis nodes.
    fn node(&self, n: u16, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.redis_port + n)
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        let _ = self.command("stop").output();
    }
}

/// The fault test of issue 12 §4: tasks stream in through `send` while our
/// worker drains them, both through the sentinels; the master is killed
/// with `kill -9` mid-stream. Both follow the promotion and go on.
///
/// Redis replicates asynchronously, so an `LPUSH` the old master
/// acknowledged in its last moment may never have reached the replica: it
/// is lost, and `send` cannot know. The test counts them and prints the
/// figure; it fails only if more went missing than that window explains
/// (a hundredth of the stream), or if anything after the failover is lost.
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_follows_a_sentinel_failover_and_counts_what_replication_lost() {
    let setup = SentinelSetup::start(0);
    let broker = setup.url(0);
    let queue = unique_name("sentinel");
    let worker = start_worker_on(
        &broker,
        &queue,
        &[
            "-c",
            "8",
            "--sentinel-master",
            MASTER,
            "--visibility-timeout",
            "5",
        ],
        &[],
    )
    .await;

    const SENT: usize = 3000;
    let producer = {
        let (broker, queue) = (broker.clone(), queue.clone());
        tokio::spawn(async move {
            run_cli(&[
                "send",
                "13800000000",
                "123456",
                "--queue",
                &queue,
                "--broker",
                &broker,
                "--sentinel-master",
                MASTER,
                "--count",
                &SENT.to_string(),
                "--rate",
                "300",
                "--ids",
            ])
            .await
        })
    };
    worker.wait_for_log("] succeeded in ", 300, WAIT).await;
    let killed = setup.script("kill-master");

    let (code, stdout, stderr) = producer.await.unwrap();
    assert_eq!(
        code,
        Some(0),
        "send did not ride out the failover: {stderr}"
    );
    let sent: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(sent.len(), SENT, "{stderr}");

    // Wait until every task ran, or the queue and the unacked records on
    // the new master are empty and nothing has run for a while (then what
    // is missing is gone).
    let new_master = setup.node(1, 0);
    let mut quiet_since = Instant::now();
    let mut last_count = 0;
    let deadline = Instant::now() + WAIT * 2;
    let ran = loop {
        let mut ran: HashMap<String, usize> = HashMap::new();
        for id in worker.succeeded_ids() {
            *ran.entry(id).or_default() += 1;
        }
        let missing = sent.iter().filter(|id| !ran.contains_key(*id)).count();
        if missing == 0 {
            break ran;
        }
        if ran.len() != last_count {
            (last_count, quiet_since) = (ran.len(), Instant::now());
        }
        let mut redis = redis(&new_master).await;
        let queued: usize = redis::cmd("LLEN")
            .arg(&queue)
            .query_async(&mut redis)
            .await
            .unwrap_or(1);
        let unacked: usize = redis::cmd("HLEN")
            .arg("unacked")
            .query_async(&mut redis)
            .await
            .unwrap_or(1);
        if queued == 0 && unacked == 0 && quiet_since.elapsed() > Duration::from_secs(8) {
            break ran;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} tasks still missing, {queued} queued, {unacked} unacked; log tail:\n{}",
            worker.log()[worker.log().len().saturating_sub(30)..].join("\n")
        );
        sleep(Duration::from_millis(200)).await;
    };
    let log = worker.log();
    assert!(
        log.iter()
            .any(|line| line.contains("Redis Sentinel moved master 'mymaster'")),
        "the worker never said it followed the master: {killed}\n{}",
        log.join("\n")
    );
    let lost: Vec<usize> = (0..SENT).filter(|n| !ran.contains_key(&sent[*n])).collect();
    let duplicates = ran.values().filter(|runs| **runs > 1).count();
    eprintln!(
        "sentinel failover: {SENT} sent, {} ran, {} lost to asynchronous replication, {duplicates} ran twice, longest gap with no task done {:.1} s",
        SENT - lost.len(),
        lost.len(),
        longest_gap_between_successes(&log)
    );
    assert!(
        lost.len() <= SENT / 100,
        "lost {} of {SENT}: more than the replication window explains (positions {lost:?})",
        lost.len()
    );
    // What was sent well after the kill went to the new master: none of it is lost.
    assert!(
        lost.iter().all(|n| *n < SENT - 300),
        "tasks sent after the failover were lost (positions {lost:?})"
    );
    worker.signal("-TERM");
    let mut worker = worker;
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
}

/// Python Celery on kombu's `sentinel://` transport and our worker share
/// one master: Python's `delay()` feeds our worker, our `send` feeds a
/// Python worker.
#[tokio::test(flavor = "multi_thread")]
async fn python_celery_and_our_worker_share_a_sentinel_master() {
    let setup = SentinelSetup::start(1);
    // The broker and the result backend both behind the sentinels.
    let (broker, results) = (setup.url(0), setup.url(1));
    let sentinel = [
        ("CELERY_BROKER_URL", broker.as_str()),
        ("CELERY_RESULT_BACKEND", results.as_str()),
        ("CELERY_SENTINEL_MASTER", MASTER),
    ];

    let queue = unique_name("sentinel-interop");
    let mut worker = start_worker_on(
        &broker,
        &queue,
        &["--sentinel-master", MASTER, "--result-backend", &results],
        &[],
    )
    .await;
    let id = interop_with_env(
        Kind::Redis,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000000", "123456"]"#,
        ],
        &sentinel,
    )
    .await;
    // Python reads the result our worker stored, through the sentinels.
    let stored = interop_with_env(Kind::Redis, &["get", &id, "--timeout", "30"], &sentinel).await;
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["state"], "SUCCESS", "{stored}");
    // Our worker ran it (its log lines leave in batches: wait for the line).
    worker
        .wait_for_log(&format!("Task SMS[{id}] received"), 1, WAIT)
        .await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());

    let mut python_env = sentinel.to_vec();
    python_env.push(("CELERY_QUEUE", &queue));
    let mut python = start_python_worker(Kind::Redis, &queue, &python_env).await;
    let (code, stdout, stderr) = run_cli(&[
        "send",
        "13800000001",
        "654321",
        "--queue",
        &queue,
        "--broker",
        &broker,
        "--sentinel-master",
        MASTER,
        "--result-backend",
        &results,
        "--wait",
    ])
    .await;
    // `--wait` read the Python worker's result through the sentinels.
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.lines().next().unwrap_or_default();
    python
        .wait_for_log(&format!("Task SMS[{id}] succeeded"), 1, WAIT)
        .await;
    python.signal("-TERM");
    let _ = python.wait().await;
}

/// Bad Sentinel input ends in one clear line, never a hang or a panic.
#[tokio::test]
async fn a_sentinel_broker_without_its_master_s_name_is_a_clear_error() {
    let (code, _, stderr) = run_cli(&[
        "send",
        "13800000000",
        "123456",
        "--broker",
        "sentinel://127.0.0.1:1;sentinel://:s3cret@127.0.0.1:2/0",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--sentinel-master"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, _, stderr) = run_cli(&[
        "send",
        "13800000000",
        "123456",
        "--broker",
        "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2/0",
        "--sentinel-master",
        MASTER,
        "--connect-timeout",
        "1",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("master 'mymaster' via sentinels 127.0.0.1:1, 127.0.0.1:2"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/sentinel start"), "{stderr}");
}

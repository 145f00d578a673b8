//! Flower 2.2 — the dashboard Celery users run — sees our worker as it sees
//! a Python one, on both brokers: online from its events, its worker page
//! from `inspect` replies, its tasks (SUCCESS, FAILURE, REVOKED, with their
//! runtime) from task events, a revoke sent from Flower honoured, and the
//! worker marked offline once `kill -9` stops its heartbeats.
//!
//! Flower's HTTP API is asked here (`FLOWER_UNAUTHENTICATED_API=1`); one
//! more test drives its pages in Debian's Chromium, headless, through
//! `python/flower_browser.py`, and saves a screenshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::*;
use serde_json::Value;
use tokio::{
    process::Command,
    time::{Instant, sleep},
};

/// A Flower of the test's own, on a free port, for `kind`'s broker.
struct Flower {
    process: Process,
    url: String,
    http: reqwest::Client,
}

impl Flower {
    async fn start(kind: Kind) -> Flower {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(python().with_file_name("celery"));
        command
            .current_dir(python_dir())
            .args([
                "-A",
                "celery_tasks.main",
                "--broker",
                &kind.python_broker(),
                "flower",
            ])
            .args([format!("--port={port}"), "--address=127.0.0.1".to_owned()])
            .env("FLOWER_UNAUTHENTICATED_API", "1")
            .env("CELERY_RESULT_BACKEND", RESULTS);
        let process = Process::spawn(command);
        let flower = Flower {
            process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        flower
            .wait_for("Flower to answer", |flower| async move {
                flower
                    .text("/healthcheck")
                    .await
                    .is_some_and(|text| text == "OK")
            })
            .await;
        flower
    }

    async fn text(&self, path: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    async fn json(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&self.text(path).await?).ok()
    }

    /// Whether Flower counts `node` as alive (from its heartbeats).
    async fn online(&self, node: &str) -> Option<bool> {
        self.json("/api/workers?status=1")
            .await?
            .get(node)?
            .as_bool()
    }

    /// Flower's record of a task, once it has `state`.
    async fn task_in_state(&self, id: &str, state: &str) -> Value {
        let path = format!("/api/task/info/{id}");
        let mut last = None;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            last = self.json(&path).await;
            if last.as_ref().is_some_and(|task| task["state"] == state) {
                return last.unwrap();
            }
            sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "Flower never showed {id} as {state}: {last:?}\n{}",
            self.process.log_text()
        );
    }

    async fn wait_for<'a, F, Fut>(&'a self, what: &str, check: F)
    where
        F: Fn(&'a Flower) -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + WAIT;
        while !check(self).await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; Flower's log:\n{}",
                self.process.log_text()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&self) {
        self.process.signal("-TERM");
    }
}

async fn flower_sees_our_worker_and_its_tasks(kind: Kind) {
    let queue = unique_name("flower");
    let node = node_name("rust", &queue);
    let flower = Flower::start(kind).await;
    let mut worker = start_worker(kind, &queue, &["-n", &node, "-E"], &[]).await;
    flower
        .wait_for("the worker online in Flower", |flower| {
            let node = node.clone();
            async move { flower.online(&node).await == Some(true) }
        })
        .await;

    // The worker page's data: Flower's own inspect calls.
    let path = format!("/api/workers?workername={node}&refresh=1");
    let workers = flower.json(&path).await.expect("no worker info");
    let info = &workers[&node];
    assert!(info["stats"]["total"].is_object(), "{info}");
    assert!(info["stats"]["broker"].is_object(), "{info}");
    assert!(
        info["registered"]
            .as_array()
            .unwrap()
            .contains(&Value::from("add")),
        "{info}"
    );
    assert_eq!(info["active_queues"][0]["name"], queue.as_str(), "{info}");

    let ok = interop(
        kind,
        &[
            "delay", "--queue", &queue, "--task", "add", "--args", "[2, 3]",
        ],
    )
    .await;
    // The SMS task refuses a code that is not digits: ValueError.
    let failed = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000005", "abc"]"#,
        ],
    )
    .await;
    let task = flower.task_in_state(&ok, "SUCCESS").await;
    assert_eq!(
        (task["result"].clone(), task["worker"].clone()),
        (Value::from("5"), Value::from(node.as_str()))
    );
    assert_eq!(task["name"], "add");
    assert_eq!(task["args"], "(2, 3)");
    assert!(
        task["runtime"]
            .as_f64()
            .is_some_and(|runtime| runtime >= 0.0),
        "{task}"
    );
    let task = flower.task_in_state(&failed, "FAILURE").await;
    assert!(
        task["exception"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ValueError("),
        "{task}"
    );

    // Revoked from Flower while it waits for its countdown: never run.
    let held = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--task",
            "add",
            "--args",
            "[9, 9]",
            "--countdown",
            "3",
        ],
    )
    .await;
    flower.task_in_state(&held, "RECEIVED").await;
    let revoked = flower
        .http
        .post(format!("{}/api/task/revoke/{held}", flower.url))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    flower.task_in_state(&held, "REVOKED").await;
    assert_eq!(python_get(kind, &held).await["state"], "REVOKED");
    assert!(
        !worker.succeeded_ids().contains(&held),
        "the revoked task ran"
    );

    // kill -9: no worker-offline, the heartbeats just stop. Flower's expiry
    // window is 2 × freq (4 s) after the last one.
    worker.signal("-KILL");
    worker.wait().await;
    let killed = Instant::now();
    flower
        .wait_for("Flower to mark the killed worker offline", |flower| {
            let node = node.clone();
            async move { flower.online(&node).await == Some(false) }
        })
        .await;
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "offline after {:?}",
        killed.elapsed()
    );

    flower.stop();
    // The killed worker's unacked messages, if any, go with the queue.
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn flower_sees_our_worker_and_its_tasks_on_redis() {
    flower_sees_our_worker_and_its_tasks(Kind::Redis).await;
}

#[tokio::test]
async fn flower_sees_our_worker_and_its_tasks_on_rabbitmq() {
    flower_sees_our_worker_and_its_tasks(Kind::Amqp).await;
}

/// `flower_browser.py` exits 4 when there is no Chromium to drive.
const NO_BROWSER: i32 = 4;

async fn browse(flower: &Flower, args: &[&str]) -> Option<String> {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(python())
            .current_dir(python_dir())
            .arg("flower_browser.py")
            .args(["--flower", &flower.url])
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("flower_browser.py hung")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(NO_BROWSER) {
        println!(
            "skipped: the browser test needs Chromium ({})",
            stderr.trim()
        );
        return None;
    }
    assert!(
        output.status.success(),
        "flower_browser.py {args:?} failed: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Through Flower's pages in a real headless Chromium: the dashboard shows
/// our worker Online, its page shows stats, registered tasks and queues, a
/// task page its SUCCESS and runtime, and a task revoked with Flower's
/// Revoke button is not run. Saves the dashboard to
/// `target/flower/dashboard.png` (the README's picture comes from it).
#[tokio::test]
async fn flower_pages_in_a_real_browser() {
    let kind = Kind::Redis;
    let queue = unique_name("flower-ui");
    let node = node_name("rust", &queue);
    let flower = Flower::start(kind).await;
    let mut worker = start_worker(kind, &queue, &["-n", &node, "-E"], &[]).await;
    let ok = interop(
        kind,
        &[
            "delay", "--queue", &queue, "--task", "add", "--args", "[20, 22]",
        ],
    )
    .await;
    flower.task_in_state(&ok, "SUCCESS").await;

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("flower")
        .join("dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);
    let shot = screenshot.to_string_lossy().into_owned();
    let Some(stdout) = browse(
        &flower,
        &[
            "--worker",
            &node,
            "--task",
            &ok,
            "--state",
            "SUCCESS",
            "--registered",
            "add",
            "--queue",
            &queue,
            "--screenshot",
            &shot,
        ],
    )
    .await
    else {
        flower.stop();
        worker.signal("-INT");
        worker.wait().await;
        return;
    };
    for step in ["ok dashboard:", "ok worker:", "ok task:", "ok screenshot:"] {
        assert!(stdout.contains(step), "{step} missing: {stdout}");
    }
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "an empty screenshot"
    );

    // Flower's Revoke button, on the page of a task held for its countdown
    // (long enough for the browser to start and click it).
    let held = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--task",
            "add",
            "--args",
            "[1, 1]",
            "--countdown",
            "12",
        ],
    )
    .await;
    flower.task_in_state(&held, "RECEIVED").await;
    let stdout = browse(
        &flower,
        &[
            "--worker",
            &node,
            "--revoke-task",
            &held,
            "--task",
            &held,
            "--state",
            "REVOKED",
        ],
    )
    .await
    .unwrap_or_default();
    assert!(
        stdout.contains("ok revoke:"),
        "{stdout}\n{}",
        worker.log_text()
    );
    assert_eq!(python_get(kind, &held).await["state"], "REVOKED");
    assert!(
        !worker.succeeded_ids().contains(&held),
        "the revoked task ran"
    );

    flower.stop();
    worker.signal("-INT");
    assert_eq!(worker.wait().await, Some(0));
    delete_queue(kind, &queue).await;
}

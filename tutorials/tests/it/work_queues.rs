//! Tutorial 2's promises, on the real broker: fair dispatch with
//! `prefetch_count=1`, a killed worker's task going to another worker, and
//! a Ctrl-C that finishes (or, twice, returns) the task in hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Running, Vhost, python, run, rust};

const READY: &str = "Waiting for messages";

fn received(worker: &Running) -> Vec<String> {
    worker
        .stdout()
        .into_iter()
        .filter_map(|line| line.strip_prefix(" [x] Received ").map(str::to_owned))
        .collect()
}

/// One slow task, then four quick ones. With `prefetch_count=1` the worker
/// busy with the slow task is skipped, so the other takes all four quick
/// ones. (Round-robin without it would give the busy worker two of them.)
#[tokio::test]
async fn a_busy_worker_is_skipped() {
    let vhost = Vhost::new().await;
    let mut first = Running::ready(rust("worker", &[], &vhost), READY).await;
    let mut second = Running::ready(rust("worker", &[], &vhost), READY).await;
    run(rust("new_task", &["slow...."], &vhost)).await;
    for quick in ["quick1", "quick2", "quick3", "quick4"] {
        run(rust("new_task", &[quick], &vhost)).await;
    }
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while received(&first).len() + received(&second).len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} {:?}",
            first.stdout(),
            second.stdout()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (busy, free) = if received(&first).contains(&"slow....".to_owned()) {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert_eq!(
        received(busy),
        ["slow...."],
        "the busy worker got more than its one task"
    );
    assert_eq!(received(free), ["quick1", "quick2", "quick3", "quick4"]);
    busy.wait_for(" [x] Done", 1).await;
    first.interrupt().await;
    second.interrupt().await;
    vhost.assert_ready("task_queue", 0).await;
    vhost.delete().await;
}

/// `kill -9` a worker (here Python's `worker.py`) in the middle of a task:
/// it never acked, so the broker hands the task to our worker, which does it.
#[tokio::test]
async fn a_killed_workers_task_goes_to_the_other_worker() {
    let vhost = Vhost::new().await;
    let doomed = Running::ready(python("worker", &[], &vhost), READY).await;
    run(rust("new_task", &["long....."], &vhost)).await;
    doomed.wait_for(" [x] Received long.....", 1).await;
    // Killed first: the task goes back to the (durable) queue and waits
    // there, however long the survivor takes to start.
    doomed.signal("-KILL");
    let mut survivor = Running::ready(rust("worker", &[], &vhost), READY).await;
    survivor.wait_for(" [x] Received long.....", 1).await;
    survivor.wait_for(" [x] Done", 1).await;
    assert!(!doomed.stdout().iter().any(|line| line.contains("Done")));
    assert_eq!(survivor.interrupt().await, Some(0));
    vhost.assert_ready("task_queue", 0).await;
    vhost.delete().await;
}

/// Ctrl-C during a task lets it finish and be acked; a second Ctrl-C stops
/// at once, and the task goes back to the queue.
#[tokio::test]
async fn ctrl_c_finishes_the_task_and_twice_returns_it() {
    let vhost = Vhost::new().await;
    run(rust("new_task", &["two.."], &vhost)).await;
    let mut worker = Running::ready(rust("worker", &[], &vhost), READY).await;
    worker.wait_for(" [x] Received two..", 1).await;
    assert_eq!(worker.interrupt().await, Some(0), "{}", worker.stderr());
    assert_eq!(
        worker.stdout().last().map(String::as_str),
        Some(" [x] Done")
    );
    vhost.assert_ready("task_queue", 0).await;

    run(rust("new_task", &["ten.........."], &vhost)).await;
    let mut worker = Running::ready(rust("worker", &[], &vhost), READY).await;
    worker.wait_for(" [x] Received ten", 1).await;
    worker.signal("-INT");
    worker
        .wait_for_stderr("finishing the task in hand first")
        .await;
    assert_eq!(worker.interrupt().await, Some(1));
    assert!(
        worker.stderr().contains("back in 'task_queue'"),
        "{}",
        worker.stderr()
    );
    vhost.assert_ready("task_queue", 1).await;
    vhost.delete().await;
}

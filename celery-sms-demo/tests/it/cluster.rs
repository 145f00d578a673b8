//! The Celery half on the three-node cluster (`scripts/cluster`), on quorum
//! queues: Python and our worker sharing one, and our worker draining
//! while the node holding the queue's Raft leader is killed.
//!
//! `#[ignore]`d: they need the cluster. `scripts/cluster test` starts it
//! and runs them one at a time, since one kills a node. Each uses its own
//! queue and kills only cluster nodes. Figures are printed: run with
//! `--nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{collections::HashMap, time::Duration};

use common::*;
use shared::testing::cluster;
use tokio::time::{Instant, sleep};

const QUORUM: (&str, &str) = ("CELERY_TASK_DEFAULT_QUEUE_TYPE", "quorum");

/// The cluster's nodes as kombu spells a `;` list (vhost `/` as `//`).
fn python_url() -> String {
    cluster::url().replace("/%2f", "//")
}

/// Fault test 4: Python `delay()` feeds our worker, and our `send` feeds a
/// Python worker, on one quorum queue of the cluster, each side given all
/// three nodes.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs scripts/cluster start"]
async fn python_and_our_worker_share_a_quorum_queue_on_the_cluster() {
    tokio::task::spawn_blocking(cluster::require).await.unwrap();
    let broker = cluster::url();
    let python_broker = python_url();
    let python_env = [("CELERY_BROKER_URL", python_broker.as_str()), QUORUM];
    let queue = unique_name("cluster-interop");

    let mut worker = start_worker_on(&broker, &queue, &["--queue-type", "quorum"], &[]).await;
    let id = interop_with_env(
        Kind::Amqp,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000000", "123456"]"#,
        ],
        &python_env,
    )
    .await;
    assert_eq!(wait_for_result(&id).await["status"], "SUCCESS");
    // Our worker ran it (its log lines leave in batches: wait for the line).
    worker
        .wait_for_log(&format!("Task SMS[{id}] received"), 1, WAIT)
        .await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());

    let mut env = python_env.to_vec();
    env.push(("CELERY_QUEUE", &queue));
    let mut python = start_python_worker(Kind::Amqp, &queue, &env).await;
    let (code, stdout, stderr) = run_cli(&[
        "send",
        "13800000001",
        "654321",
        "--queue",
        &queue,
        "--broker",
        &broker,
        "--queue-type",
        "quorum",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.lines().next().unwrap_or_default();
    python
        .wait_for_log(&format!("Task SMS[{id}] succeeded"), 1, WAIT)
        .await;
    python.signal("-TERM");
    let _ = python.wait().await;
    let leader = cluster::queue_leader(&queue);
    assert!(leader.is_some(), "the queue is not on the cluster");
    tokio::task::spawn_blocking(move || cluster::delete_queue(&queue))
        .await
        .unwrap();
}

/// Fault test 2: our worker drains 5,000 tasks from a quorum queue, acking
/// each after it ran, while the node holding the queue's leader — the node
/// the worker is connected to — is killed. Every task runs at least once,
/// and the queue ends empty. Prints the recovery time: the longest stretch
/// with no task done.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs scripts/cluster start"]
async fn the_worker_drains_a_quorum_queue_while_the_leader_s_node_dies() {
    tokio::task::spawn_blocking(cluster::require).await.unwrap();
    const TASKS: usize = 5000;
    let queue = unique_name("cluster-drain");
    // Declared and filled through c1, so c1 holds the leader (a quorum
    // queue's leader starts on the node that declared it).
    let (code, stdout, stderr) = run_cli(&[
        "send",
        "13800000000",
        "123456",
        "--queue",
        &queue,
        "--broker",
        &cluster::node_url("c1"),
        "--queue-type",
        "quorum",
        "--count",
        &TASKS.to_string(),
        "--ids",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let sent: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(sent.len(), TASKS);
    let leader = {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || cluster::queue_leader(&queue))
            .await
            .unwrap()
            .expect("no leader")
    };

    // The worker's list starts with the leader's node: the connection and
    // the leader die together, the worst case.
    let others: Vec<String> = cluster::NODES
        .iter()
        .filter(|node| **node != leader)
        .map(|node| cluster::node_url(node))
        .collect();
    let broker = format!("{};{}", cluster::node_url(&leader), others.join(";"));
    // -c 8: a drain of some seconds, long enough to kill mid-way.
    let mut worker =
        start_worker_on(&broker, &queue, &["--queue-type", "quorum", "-c", "8"], &[]).await;
    worker.wait_for_log("] succeeded in ", 1000, WAIT).await;
    let killed = leader.clone();
    tokio::task::spawn_blocking(move || cluster::kill(&killed))
        .await
        .unwrap();

    let deadline = Instant::now() + WAIT * 3;
    let ran = loop {
        let mut ran: HashMap<String, usize> = HashMap::new();
        for id in worker.succeeded_ids() {
            *ran.entry(id).or_default() += 1;
        }
        if sent.iter().all(|id| ran.contains_key(id)) {
            break ran;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {TASKS} tasks never ran; what the worker said besides its tasks:\n{}",
            sent.iter().filter(|id| !ran.contains_key(*id)).count(),
            worker
                .log()
                .iter()
                .filter(|line| !line.contains("Task SMS[") && !line.contains("SMS to "))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        sleep(Duration::from_millis(200)).await;
    };
    // The queue ends empty: every delivery was acked on the new leader.
    let counted = {
        let queue = queue.clone();
        let deadline = Instant::now() + WAIT;
        loop {
            let queue = queue.clone();
            let counts = tokio::task::spawn_blocking(move || cluster::queue_counts(&queue))
                .await
                .unwrap();
            if counts == Some((0, 0)) || Instant::now() > deadline {
                break counts;
            }
            sleep(Duration::from_millis(500)).await;
        }
    };
    let gap = longest_gap_between_successes(&worker.log());
    eprintln!(
        "leader's node {leader} killed mid-drain: {TASKS} tasks, {} ran, {} ran more than once, 0 lost; longest stretch with no task done {gap:.1} s; queue afterwards (ready, unacked) {counted:?}",
        ran.len(),
        ran.values().filter(|runs| **runs > 1).count(),
    );
    assert_eq!(counted, Some((0, 0)), "the queue did not end empty");
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    tokio::task::spawn_blocking(move || {
        cluster::start_node(&leader);
        cluster::delete_queue(&queue);
    })
    .await
    .unwrap();
}

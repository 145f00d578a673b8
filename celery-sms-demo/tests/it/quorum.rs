//! Celery on quorum queues (`task_default_queue_type = 'quorum'`), on the
//! main RabbitMQ: a single node hosts quorum queues too, so what does not
//! need a node to die is tested here, and the rest on the cluster.
//!
//! * our worker and Python's declare the same queue and share it;
//! * a poison message is dead-lettered after the queue's `x-delivery-limit`;
//! * tasks held for their ETA free their prefetch slots, as on a classic queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{fake_gateway::FakeGateway, *};
use serde_json::json;

const QUORUM: (&str, &str) = ("CELERY_TASK_DEFAULT_QUEUE_TYPE", "quorum");

/// `x-queue-type` of a queue, as `rabbitmqctl list_queues name type` says.
fn queue_type(queue: &str) -> Option<String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split('\t');
            (fields.next()? == queue).then(|| fields.next().map(str::to_owned))?
        })
}

/// Python `delay()` → our worker, then our `send` → a Python worker, on one
/// quorum queue that each side declares the same way.
#[tokio::test]
async fn a_quorum_queue_is_shared_with_python_celery() {
    let kind = Kind::Amqp;
    let queue = unique_name("quorum-interop");
    let mut worker = start_worker(kind, &queue, &["-c", "4"], &[QUORUM]).await;
    assert_eq!(queue_type(&queue).as_deref(), Some("quorum"));

    let id = interop_with_env(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000000", "123456"]"#,
        ],
        &[QUORUM],
    )
    .await;
    assert_eq!(python_get(kind, &id).await["state"], "SUCCESS");
    assert!(
        worker
            .log_text()
            .contains(&format!("Task SMS[{id}] received"))
    );
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());

    let mut python = start_python_worker(kind, &queue, &[QUORUM, ("CELERY_QUEUE", &queue)]).await;
    let id = send(
        kind,
        &queue,
        &["13800000001", "654321", "--queue-type", "quorum"],
    )
    .await;
    assert_eq!(python_get(kind, &id).await["state"], "SUCCESS");
    python
        .wait_for_log(&format!("Task SMS[{id}] succeeded"), 1, WAIT)
        .await;
    python.signal("-TERM");
    let _ = python.wait().await;
    assert_eq!(queue_type(&queue).as_deref(), Some("quorum"));
    delete_queue(kind, &queue).await;
}

/// A task that kills its worker every time would loop forever on a classic
/// queue. A quorum queue counts deliveries: past `x-delivery-limit` the
/// message goes to the dead-letter queue, and the next worker is left alone.
#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_the_delivery_limit() {
    let kind = Kind::Amqp;
    let queue = unique_name("poison");
    let dead = format!("{queue}.dead");
    // The operator's queue: quorum, at most one redelivery, then to `dead`.
    declare_dead_lettered_queue(
        &queue,
        &dead,
        json!({"x-queue-type": "quorum", "x-delivery-limit": 1}),
    )
    .await;

    // The "crash": the SMS gateway hangs, and we kill -9 the worker mid-task.
    let gateway = FakeGateway::start(0, Duration::from_secs(30)).await;
    let env = gateway.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(QUORUM);
    let id = send(
        kind,
        &queue,
        &["13800000000", "123456", "--queue-type", "quorum"],
    )
    .await;
    for delivery in 1..=2 {
        let mut worker = start_worker(kind, &queue, &["-c", "1"], &env).await;
        worker.wait_for_log("] received", 1, WAIT).await;
        worker.signal("-KILL");
        let _ = worker.wait().await;
        eprintln!("delivery {delivery} of task {id}: worker killed mid-task");
    }
    // Delivered twice (once + one redelivery): dead-lettered, not queued again.
    let deadline = std::time::Instant::now() + WAIT;
    while shared::testing::ready_count(&dead).await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the poison message never reached {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shared::testing::ready_count(&queue).await, 0);
    let mut worker = start_worker(kind, &queue, &["-c", "1"], &env).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !worker.log_text().contains("] received"),
        "the poison message came back: {}",
        worker.log_text()
    );
    worker.signal("-TERM");
    let _ = worker.wait().await;
    delete_queue(kind, &queue).await;
    shared::testing::delete_queue(&dead).await;
}

/// A queue an operator declared quorum, consumed by a worker left at the
/// default (classic): a quorum queue refuses the channel-wide prefetch a
/// classic queue gets (with a connection error), so a queue of unknown type
/// gets a per-consumer one, and the worker starts and runs its tasks.
#[tokio::test]
async fn a_queue_declared_quorum_elsewhere_gets_a_per_consumer_prefetch() {
    let kind = Kind::Amqp;
    let queue = unique_name("quorum-elsewhere");
    let dead = format!("{queue}.dead");
    declare_dead_lettered_queue(&queue, &dead, json!({"x-queue-type": "quorum"})).await;

    let mut worker = start_worker(kind, &queue, &["-c", "2"], &[]).await;
    assert!(
        worker
            .log_text()
            .contains(&format!("Queue '{queue}' exists with other arguments")),
        "{}",
        worker.log_text()
    );
    let id = send(kind, &queue, &["13800000000", "123456"]).await;
    worker
        .wait_for_log(&format!("Task SMS[{id}] succeeded"), 1, WAIT)
        .await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    assert_eq!(queue_type(&queue).as_deref(), Some("quorum"));
    delete_queue(kind, &queue).await;
    delete_queue(kind, &dead).await;
}

/// On a quorum queue the window is per consumer and cannot be widened while
/// the consumer runs, so the worker restarts its consumer when a task is
/// held for its ETA. With one slot and three tasks held, a quick task still
/// runs at once; the held ones run when due, once each, and are acked on
/// the channel after their consumer was cancelled (the queue ends empty).
#[tokio::test]
async fn held_tasks_do_not_block_the_prefetch_window_on_a_quorum_queue() {
    let kind = Kind::Amqp;
    let queue = unique_name("quorum-held");
    let mut worker = start_worker(
        kind,
        &queue,
        &["-c", "1", "--prefetch-multiplier", "1"],
        &[QUORUM],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            send(
                kind,
                &queue,
                &[
                    "13800000000",
                    "123456",
                    "--countdown",
                    "6",
                    "--queue-type",
                    "quorum",
                ],
            )
            .await,
        );
    }
    let quick = send(
        kind,
        &queue,
        &["13800000001", "654321", "--queue-type", "quorum"],
    )
    .await;
    // Without the restart the quick task waits behind the first held one.
    worker
        .wait_for_log(&format!("Task SMS[{quick}] succeeded"), 1, WAIT)
        .await;
    let log = worker.log_text();
    for id in &held {
        assert!(
            !log.contains(&format!("Task SMS[{id}] succeeded")),
            "a held task ran before the quick one: {log}"
        );
    }
    for id in &held {
        worker
            .wait_for_log(&format!("Task SMS[{id}] succeeded"), 1, WAIT)
            .await;
    }
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    let log = worker.log_text();
    for id in held.iter().chain([&quick]) {
        assert_eq!(
            log.matches(&format!("Task SMS[{id}] succeeded")).count(),
            1,
            "{log}"
        );
    }
    // An ack lost on a cancelled consumer would put the task back here.
    assert_eq!(queue_length(kind, &queue).await, 0);
    delete_queue(kind, &queue).await;
}

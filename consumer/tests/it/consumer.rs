//! The consumer against a real RabbitMQ: delivery, sharing, recovery, stop.
//!
//! Each test owns its queue (`unique_name`) and deletes it at the end, so the
//! suite can run in parallel and twice in a row. The fault test closes only
//! its own connection, found by the unique connection name it gave it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use common::SharedOutput;

use consumer::{AckMode, ConsumerConfig};
use producer::{Messages, ProducerConfig};
use shared::{
    AmqpSettings, QueueSpec, QueueType,
    testing::{amqp_url, close_connections_named, delete_queue, ready_count, unique_name},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::Notify,
    time::timeout,
};

const WAIT: Duration = Duration::from_secs(60);

fn settings() -> AmqpSettings {
    AmqpSettings::new(amqp_url())
}

async fn publish_numbered(queue: &QueueSpec, text: &str, count: u64) {
    let config = ProducerConfig {
        amqp: settings(),
        queue: queue.clone(),
        messages: Messages::Numbered {
            text: text.to_owned(),
            count,
        },
    };
    let report = timeout(WAIT, producer::run(config, std::future::pending()))
        .await
        .expect("publishing timed out")
        .expect("publishing failed");
    assert_eq!(report.published, count);
}

fn numbered(text: &str, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("{text} #{n}")).collect()
}

fn consumer_config(queue: &QueueSpec, prefetch: u16, limit: Option<u64>) -> ConsumerConfig {
    ConsumerConfig {
        amqp: settings(),
        queue: queue.clone(),
        ack_mode: AckMode::AfterPrint,
        prefetch,
        limit,
    }
}

#[tokio::test]
async fn round_trip_keeps_every_message_in_order() {
    let queue = QueueSpec::new(unique_name("round-trip"));
    publish_numbered(&queue, "hello", 500).await;

    let output = SharedOutput::default();
    let report = timeout(
        WAIT,
        consumer::run(
            consumer_config(&queue, 100, Some(500)),
            output.clone(),
            std::future::pending(),
        ),
    )
    .await
    .expect("consuming timed out")
    .expect("consuming failed");

    assert_eq!(report.received, 500);
    assert_eq!(output.lines(), numbered("hello", 1..=500));
    assert_eq!(
        ready_count(&queue.name).await,
        0,
        "everything printed was acked"
    );
    delete_queue(&queue.name).await;
}

/// `--queue-type quorum` on both sides: the producer declares a quorum
/// queue (durable, persistent messages), the consumer drains it in order; a
/// consumer that asks for a classic queue of that name is told which flag
/// matches.
#[tokio::test]
async fn a_quorum_queue_round_trips_and_a_classic_declare_says_which_type_it_is() {
    let queue = QueueSpec::new(unique_name("quorum")).queue_type(QueueType::Quorum);
    assert!(queue.durable, "a quorum queue is always durable");
    publish_numbered(&queue, "q", 200).await;

    let classic = QueueSpec::new(&queue.name).durable(true);
    let refused = consumer::run(
        consumer_config(&classic, 10, Some(1)),
        SharedOutput::default(),
        std::future::pending(),
    )
    .await
    .expect_err("a classic declare of a quorum queue must be refused");
    let message = refused.to_string();
    assert!(message.contains("--queue-type quorum"), "{message}");

    let output = SharedOutput::default();
    let report = timeout(
        WAIT,
        consumer::run(
            consumer_config(&queue, 50, Some(200)),
            output.clone(),
            std::future::pending(),
        ),
    )
    .await
    .expect("consuming timed out")
    .expect("consuming failed");
    assert_eq!(report.received, 200);
    assert_eq!(output.lines(), numbered("q", 1..=200));
    assert_eq!(ready_count(&queue.name).await, 0);
    delete_queue(&queue.name).await;
}

#[tokio::test]
async fn two_competing_consumers_share_the_work_without_duplicates() {
    let queue = QueueSpec::new(unique_name("competing"));
    // Declare first so both consumers are attached before anything is published.
    publish_numbered(&queue, "warmup", 1).await;
    let output = SharedOutput::default();
    let done = Arc::new(Notify::new());
    let spawn_consumer = |output: SharedOutput| {
        let done = done.clone();
        let config = consumer_config(&queue, 10, None);
        tokio::spawn(async move {
            consumer::run(config, output, async move { done.notified().await }).await
        })
    };
    let first = spawn_consumer(output.clone());
    let second = spawn_consumer(output.clone());
    output.wait_for_lines(1).await;
    wait_for_consumers(&queue.name, 2).await;

    publish_numbered(&queue, "job", 1000).await;
    timeout(WAIT, output.wait_for_lines(1001))
        .await
        .expect("not every job arrived");
    done.notify_waiters();
    let first = first.await.unwrap().expect("first consumer failed");
    let second = second.await.unwrap().expect("second consumer failed");

    let lines = output.lines();
    let unique: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(lines.len(), 1001, "a duplicate was printed");
    assert_eq!(unique.len(), 1001);
    assert!(
        first.received > 0 && second.received > 0,
        "work was not shared: {first:?} {second:?}"
    );
    delete_queue(&queue.name).await;
}

async fn wait_for_consumers(queue: &str, expected: u32) {
    let connection = shared::testing::test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    timeout(WAIT, async {
        loop {
            let declared = channel
                .queue_declare(queue.into(), passive, Default::default())
                .await
                .unwrap();
            if declared.consumer_count() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("consumers did not attach");
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test]
async fn survives_a_forced_connection_close_mid_stream() {
    let queue = QueueSpec::new(unique_name("recovery")).durable(true);
    let connection_name = unique_name("recovery-consumer");
    publish_numbered(&queue, "before", 300).await;

    let output = SharedOutput::default();
    let done = Arc::new(Notify::new());
    let mut config = consumer_config(&queue, 20, None);
    config.amqp.connection_name = Some(connection_name.clone());
    let consumer = {
        let (output, done) = (output.clone(), done.clone());
        tokio::spawn(async move {
            consumer::run(config, output, async move { done.notified().await }).await
        })
    };
    output.wait_for_lines(100).await;

    let name = connection_name.clone();
    let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
        .await
        .unwrap();
    assert_eq!(closed, 1, "the consumer's connection was not found");
    publish_numbered(&queue, "after", 300).await;

    let mut expected: BTreeSet<String> = numbered("before", 1..=300).into_iter().collect();
    expected.extend(numbered("after", 1..=300));
    timeout(WAIT, async {
        loop {
            let seen: BTreeSet<String> = output.lines().into_iter().collect();
            if expected.is_subset(&seen) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "messages missing after recovery; saw {} lines",
            output.lines().len()
        )
    });
    done.notify_waiters();
    timeout(WAIT, consumer)
        .await
        .unwrap()
        .unwrap()
        .expect("consumer failed");
    assert_eq!(ready_count(&queue.name).await, 0);
    delete_queue(&queue.name).await;
}

#[tokio::test]
async fn sigterm_leaves_exactly_the_unprinted_messages_in_the_queue() {
    let queue = QueueSpec::new(unique_name("sigterm")).durable(true);
    // Bodies of ~1 KB: the 64 KB stdout pipe fills after a few dozen, and the
    // consumer blocks mid-stream until we read.
    let padding = "x".repeat(1000);
    publish_numbered(&queue, &padding, 1000).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--queue", &queue.name, "--durable", "--prefetch", "50"])
        .env("AMQP_URL", amqp_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(WAIT, lines.next_line()).await.unwrap().unwrap();
    assert!(first.is_some(), "the consumer printed nothing");
    tokio::time::sleep(Duration::from_millis(500)).await;

    shared::testing::send_signal(child.id().unwrap(), "-TERM");
    let mut printed = vec![first.unwrap()];
    while let Some(line) = timeout(WAIT, lines.next_line()).await.unwrap().unwrap() {
        printed.push(line);
    }
    let status = timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "warm shutdown must exit 0");

    let total = printed.len();
    assert!(total < 1000, "the consumer was not stopped mid-stream");
    assert_eq!(
        printed,
        numbered(&padding, 1..=total as u64),
        "printed out of order"
    );
    assert_eq!(
        ready_count(&queue.name).await as usize,
        1000 - total,
        "exactly the unprinted messages must be back in the queue"
    );
    delete_queue(&queue.name).await;
}

/// An operator closes the consumer's connection: lapin recovers by itself,
/// and the log says so, once — a warning when the connection is lost and
/// an info line, with how long it took, when it is back.
#[tokio::test]
async fn a_lost_connection_is_logged_once_and_its_recovery_too() {
    let queue = QueueSpec::new(unique_name("outage-log"));
    publish_numbered(&queue, "before", 10).await;
    let connection_name = unique_name("consumer-outage");
    let mut child = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args([
            "--queue",
            &queue.name,
            "--connection-name",
            &connection_name,
        ])
        .env("AMQP_URL", amqp_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..10 {
        timeout(WAIT, lines.next_line()).await.unwrap().unwrap();
    }
    let name = connection_name.clone();
    let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
        .await
        .unwrap();
    assert_eq!(closed, 1, "the consumer's connection was not found");
    // Consuming resumes after the recovery: a message sent now is printed.
    publish_numbered(&queue, "after", 1).await;
    let mut printed = Vec::new();
    while !printed.contains(&"after #1".to_owned()) {
        match timeout(WAIT, lines.next_line()).await.unwrap().unwrap() {
            Some(line) => printed.push(line),
            None => panic!("the consumer ended: {printed:?}"),
        }
    }
    shared::testing::send_signal(child.id().unwrap(), "-TERM");
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lost: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARNING") && line.contains("Connection to RabbitMQ at"))
        .collect();
    assert_eq!(lost.len(), 1, "one warning per outage:\n{log}");
    assert!(lost[0].contains("amqp://guest:**@"), "{}", lost[0]);
    assert!(log.contains("re-established after"), "{log}");
    delete_queue(&queue.name).await;
}

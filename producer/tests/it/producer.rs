//! The producer against a real RabbitMQ: what lands in the queue, confirms,
//! returned messages, and republishing after a dropped connection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{collections::BTreeSet, io::Write, process::Stdio, time::Duration};

use futures_lite::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicConsumeOptions, QueueDeclareOptions},
};
use shared::{
    AmqpError, ConfirmedPublisher, Outgoing,
    testing::{
        amqp_url, close_connections_named, delete_queue, run_cli, test_connection, unique_name,
    },
};

const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");
const LIMIT: Duration = Duration::from_secs(60);

/// Takes every message out of `queue`, in order, as (body, delivery mode).
async fn drain(queue: &str) -> Vec<(String, Option<u8>)> {
    let connection = test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let waiting = channel
        .queue_declare(queue.into(), passive, Default::default())
        .await
        .unwrap()
        .message_count();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let mut messages = Vec::new();
    while messages.len() < waiting as usize {
        let delivery = tokio::time::timeout(LIMIT, consumer.next())
            .await
            .expect("queue drained too slowly")
            .unwrap()
            .unwrap();
        messages.push((
            String::from_utf8_lossy(&delivery.data).into_owned(),
            *delivery.properties.delivery_mode(),
        ));
    }
    let _ = connection.close(200, "bye".into()).await;
    messages
}

#[tokio::test]
async fn the_blog_message_with_the_blog_line() {
    let queue = unique_name("blog");
    let args = ["--queue", queue.as_str()];
    let output = tokio::task::spawn_blocking({
        let args = args.map(str::to_owned);
        move || {
            run_cli(
                PRODUCER,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                LIMIT,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(
        output.stdout,
        format!("开始向 '{queue}' 队列中发布消息 'Hello RabbitMQ!'\n")
    );
    assert_eq!(
        drain(&queue).await,
        vec![("Hello RabbitMQ!".to_owned(), None)]
    );
    delete_queue(&queue).await;
}

#[tokio::test]
async fn durable_count_publishes_numbered_persistent_messages() {
    let queue = unique_name("durable");
    let name = queue.clone();
    let output = tokio::task::spawn_blocking(move || {
        run_cli(
            PRODUCER,
            &[
                "--queue",
                &name,
                "--durable",
                "--count",
                "5",
                "--message",
                "m",
            ],
            LIMIT,
        )
    })
    .await
    .unwrap();
    assert_eq!(output.code, Some(0), "{output:?}");
    let expected: Vec<_> = (1..=5).map(|n| (format!("m #{n}"), Some(2))).collect();
    assert_eq!(drain(&queue).await, expected);
    delete_queue(&queue).await;
}

#[tokio::test]
async fn stdin_lines_become_messages_in_order() {
    let queue = unique_name("stdin");
    let mut child = std::process::Command::new(PRODUCER)
        .args(["--queue", &queue, "--message", "-"])
        .env("AMQP_URL", amqp_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"first\r\n\xe7\xac\xac\xe4\xba\x8c\nnot utf8 \xff\n")
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let bodies: Vec<String> = drain(&queue)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    assert_eq!(bodies, ["first", "第二", "not utf8 \u{fffd}"]);
    delete_queue(&queue).await;
}

#[tokio::test]
async fn an_unroutable_message_is_an_error_not_silence() {
    let connection = std::sync::Arc::new(test_connection().await);
    let mut publisher = ConfirmedPublisher::open(&connection, 16).await.unwrap();
    let nowhere = unique_name("no-such-queue");
    publisher
        .publish(Outgoing::to_queue(
            &nowhere,
            "lost?",
            BasicProperties::default(),
        ))
        .await
        .unwrap();
    match publisher.flush().await {
        Err(AmqpError::Returned {
            routing_key, reply, ..
        }) => {
            assert_eq!(routing_key, nowhere);
            assert!(reply.contains("NO_ROUTE"), "{reply}");
        }
        other => panic!("expected a returned message, got {other:?}"),
    }
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test]
async fn republishes_unconfirmed_messages_after_the_connection_drops() {
    let queue = unique_name("republish");
    let connection_name = unique_name("republish-producer");
    let child = tokio::process::Command::new(PRODUCER)
        .args([
            "--queue",
            &queue,
            "--durable",
            "--count",
            "60000",
            "--message",
            "n",
        ])
        .args(["--connection-name", &connection_name])
        .env("AMQP_URL", amqp_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Let it get going, then pull the connection out from under it.
    let mut closed = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let name = connection_name.clone();
        closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
            .await
            .unwrap();
        if closed > 0 {
            break;
        }
    }
    assert_eq!(closed, 1, "the producer's connection was not found");
    let output = tokio::time::timeout(LIMIT * 2, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the producer must recover and finish: {stderr}"
    );
    assert!(
        stderr.contains("WARNING/MainProcess] Connection to RabbitMQ at")
            && stderr.contains("re-established after"),
        "the outage was not logged: {stderr}"
    );

    let bodies: BTreeSet<String> = drain(&queue)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    let missing = (1..=60000)
        .filter(|n| !bodies.contains(&format!("n #{n}")))
        .count();
    assert_eq!(missing, 0, "messages lost across the reconnect");
    delete_queue(&queue).await;
}

#[test]
fn count_and_stdin_together_are_refused() {
    let output = run_cli(PRODUCER, &["--message", "-", "--count", "3"], LIMIT);
    output.assert_one_line_error(&["--count", "stdin"]);
}

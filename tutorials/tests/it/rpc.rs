//! Tutorial 6's client and server beyond the happy path, on the real broker:
//! timeouts, strays, many calls on one callback queue, direct reply-to, and
//! requests the server cannot answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Running, Vhost, rust};
use lapin::{BasicProperties, options::BasicPublishOptions};
use shared::{AmqpSettings, connect_amqp};
use tutorials::rpc::{ReplyQueue, RpcClient, fib};

const READY: &str = "Awaiting RPC requests";

/// With `rpc_queue` there but no server, a call ends after its timeout with
/// one clear line; its request expires instead of waiting for a later server.
#[tokio::test]
async fn a_call_nobody_answers_times_out_cleanly() {
    let vhost = Vhost::new().await;
    // A server that declared the queue, then left.
    let mut server = Running::ready(rust("rpc_server", &[], &vhost), READY).await;
    server.interrupt().await;
    let started = Instant::now();
    let mut client = Running::start(rust("rpc_client", &["--timeout", "1"], &vhost));
    assert_eq!(client.wait().await, Some(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    let errors: Vec<_> = client
        .stderr()
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(errors.len(), 1, "{}", client.stderr());
    assert!(
        errors[0].contains("no RPC server answered on 'rpc_queue' within 1 s"),
        "{errors:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    vhost.assert_ready("rpc_queue", 0).await;

    // And with no queue at all, the client says so at once.
    let other = Vhost::new().await;
    let mut client = Running::start(rust("rpc_client", &[], &other));
    assert_eq!(client.wait().await, Some(1));
    assert!(
        client.stderr().contains("there is no queue 'rpc_queue'"),
        "{}",
        client.stderr()
    );
    other.delete().await;
    vhost.delete().await;
}

/// Many concurrent calls share one client and one callback queue; each gets
/// its own answer (a mix-up would show as a wrong Fibonacci number), and
/// replies nobody waits for are ignored.
#[tokio::test]
async fn concurrent_calls_share_one_callback_queue_and_ignore_strays() {
    let vhost = Vhost::new().await;
    let mut server = Running::ready(rust("rpc_server", &["--prefetch", "20"], &vhost), READY).await;
    let connection = connect_amqp(&AmqpSettings::new(vhost.url()), "rpc test")
        .await
        .unwrap();
    let client = std::sync::Arc::new(
        RpcClient::open(&connection, ReplyQueue::Exclusive, Duration::from_secs(20))
            .await
            .unwrap(),
    );
    // Strays in the callback queue, confirmed before any call starts: an
    // unknown id, and no id at all. The reader must skip them and go on.
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for properties in [
        BasicProperties::default().with_correlation_id("stray".into()),
        BasicProperties::default(),
    ] {
        channel
            .basic_publish(
                "".into(),
                client.reply_to().into(),
                BasicPublishOptions::default(),
                b"12345",
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let calls: Vec<_> = (0..60u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i % 40, client.call(i % 40).await) })
        })
        .collect();
    for call in calls {
        let (n, answer) = call.await.unwrap();
        assert_eq!(answer.unwrap(), fib(n).unwrap(), "fib({n})");
    }
    // The server's queue and our one callback queue: nothing per call.
    let mut queues = vhost.queue_names().await;
    queues.sort();
    assert_eq!(queues.len(), 2, "{queues:?}");
    assert_eq!(queues[1], "rpc_queue");
    assert!(queues[0].starts_with("amq.gen-"), "{queues:?}");
    let _ = connection.close(200, "bye".into()).await;
    server.interrupt().await;
    vhost.delete().await;
}

/// Direct reply-to: replies come through `amq.rabbitmq.reply-to`, with no
/// callback queue declared; here against the Python server.
#[tokio::test]
async fn direct_reply_to_works_with_the_python_server() {
    let vhost = Vhost::new().await;
    let mut server = Running::ready(common::python("rpc_server", &[], &vhost), READY).await;
    let lines = common::run(rust(
        "rpc_client",
        &[
            "--direct-reply-to",
            "--calls",
            "20",
            "--concurrency",
            "4",
            "10",
        ],
        &vhost,
    ))
    .await;
    assert_eq!(lines[0], " [x] Requesting fib(10) 20 times, 4 at a time");
    assert!(
        lines[1].starts_with(" [.] Got 55 20 times in "),
        "{lines:?}"
    );
    server.interrupt().await;
    vhost.delete().await;
}

/// A request the server cannot answer (not a number, no reply_to) is
/// rejected with a warning; the server goes on answering the next one.
#[tokio::test]
async fn bad_requests_are_rejected_and_the_server_goes_on() {
    let vhost = Vhost::new().await;
    let mut server = Running::ready(rust("rpc_server", &[], &vhost), READY).await;
    let connection = connect_amqp(&AmqpSettings::new(vhost.url()), "rpc test")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let with_reply = BasicProperties::default().with_reply_to("nowhere".into());
    for (body, properties) in [
        (&b"thirty"[..], with_reply.clone()),
        (b"1000", with_reply),
        (b"5", BasicProperties::default()),
    ] {
        channel
            .basic_publish(
                "".into(),
                "rpc_queue".into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap();
    }
    let client = RpcClient::open(&connection, ReplyQueue::Exclusive, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(client.call(7).await.unwrap(), 13);
    server.wait_for_stderr("it has no reply_to").await;
    let stderr = server.stderr();
    assert!(
        stderr.contains(
            "rejecting a request: its body \"thirty\" is not a whole number from 0 to 93"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("its body \"1000\""), "{stderr}");
    assert!(stderr.contains("it has no reply_to"), "{stderr}");
    vhost.assert_ready("rpc_queue", 0).await;
    assert!(matches!(client.call(7).await, Ok(13)));
    let _ = connection.close(200, "bye".into()).await;
    assert_eq!(server.interrupt().await, Some(0));
    vhost.delete().await;
}

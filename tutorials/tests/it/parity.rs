//! Parity with the Python tutorials, on the real broker: for each tutorial
//! our binaries and the pika scripts talk to each other in both directions,
//! and print the same lines for the same messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Running, Side, Vhost, run};

/// Runs a sender to completion and returns what it printed.
async fn send(side: Side, name: &str, args: &[&str], vhost: &Vhost) -> Vec<String> {
    run(side.command(name, args, vhost)).await
}

/// Tutorial 2: `new_task.py` feeds our `worker`, our `new_task` feeds
/// `worker.py`, and both workers print the same lines for the same task.
#[tokio::test]
async fn work_queues_both_ways() {
    let vhost = Vhost::new().await;
    let mut outputs = Vec::new();
    for worker_side in [Side::Rust, Side::Python] {
        let mut worker = Running::ready(
            worker_side.command("worker", &[], &vhost),
            "Waiting for messages",
        )
        .await;
        let sent = send(worker_side.other(), "new_task", &["A", "task."], &vhost).await;
        assert_eq!(sent, [" [x] Sent A task."]);
        worker.wait_for(" [x] Done", 1).await;
        worker.interrupt().await;
        outputs.push(worker.stdout());
    }
    assert_eq!(
        outputs[0],
        [
            " [*] Waiting for messages. To exit press CTRL+C",
            " [x] Received A task.",
            " [x] Done"
        ]
    );
    assert_eq!(outputs[0], outputs[1], "our worker vs worker.py");
    // Both sides declare task_queue alike (durable), and nothing is left in it.
    vhost.assert_ready("task_queue", 0).await;
    vhost.delete().await;
}

/// Sends the same messages from both sides and checks that one receiver of
/// each side printed exactly the same lines, in order.
async fn receivers_agree(
    receiver: &str,
    receiver_args: &[&str],
    sender: &str,
    messages: &[(Side, &[&str])],
    expected: &[&str],
) {
    let vhost = Vhost::new().await;
    let mut ours = Running::ready(
        common::rust(receiver, receiver_args, &vhost),
        "Waiting for logs",
    )
    .await;
    let mut pikas = Running::ready(
        common::python(receiver, receiver_args, &vhost),
        "Waiting for logs",
    )
    .await;
    for (side, args) in messages {
        let sent = send(*side, sender, args, &vhost).await;
        // The sender's own line is the same whichever side sent it.
        let other = send(side.other(), sender, args, &vhost).await;
        assert_eq!(sent, other, "{sender} {args:?}: ours vs pika's");
    }
    // Each message went out twice (once per side).
    let last = expected.last().copied().unwrap_or_default();
    let copies = expected.iter().filter(|line| **line == last).count();
    ours.wait_for(last, copies).await;
    pikas.wait_for(last, copies).await;
    ours.interrupt().await;
    pikas.interrupt().await;
    let ours_lines = ours.stdout();
    let (last, received) = ours_lines[1..].split_last().unwrap();
    assert_eq!(received, expected, "our {receiver}");
    assert_eq!(last, "Interrupted", "our {receiver} after Ctrl-C");
    assert_eq!(
        ours_lines,
        pikas.stdout(),
        "our {receiver} vs {receiver}.py"
    );
    vhost.delete().await;
}

/// Tutorial 3: the `logs` fanout; every receiver gets every message.
#[tokio::test]
async fn publish_subscribe_both_ways() {
    receivers_agree(
        "receive_logs",
        &[],
        "emit_log",
        &[(Side::Python, &[]), (Side::Rust, &["it's", "\"quoted\""])],
        &[
            " [x] info: Hello World!",
            " [x] info: Hello World!",
            " [x] it's \"quoted\"",
            " [x] it's \"quoted\"",
        ],
    )
    .await;
}

/// Tutorial 4: `direct_logs`; a receiver gets only the severities it bound.
#[tokio::test]
async fn routing_both_ways() {
    receivers_agree(
        "receive_logs_direct",
        &["warning", "error"],
        "emit_log_direct",
        &[
            (
                Side::Python,
                &["error", "Run.", "Run.", "Or", "it", "will", "explode."],
            ),
            (Side::Rust, &["info", "not", "for", "us"]),
            // One word is not a severity: both scripts send "info", nobody binds it.
            (Side::Rust, &["warning"]),
            (Side::Python, &["warning", "disk", "low"]),
        ],
        &[
            " [x] error:Run. Run. Or it will explode.",
            " [x] error:Run. Run. Or it will explode.",
            " [x] warning:disk low",
            " [x] warning:disk low",
        ],
    )
    .await;
}

/// Tutorial 5: `topic_logs`; `*` is one word, `#` any number.
#[tokio::test]
async fn topics_both_ways() {
    receivers_agree(
        "receive_logs_topic",
        &["kern.*", "*.critical", "audit.#"],
        "emit_log_topic",
        &[
            (Side::Rust, &["kern.critical", "A critical kernel error"]),
            (Side::Python, &["user.info", "nobody", "listens"]),
            (Side::Python, &["user.critical", "disk", "full"]),
            (
                Side::Rust,
                &["kern.net.info", "two words after kern: no match"],
            ),
            (Side::Rust, &["audit.login.root", "root logged in"]),
        ],
        &[
            // kern.critical matches both kern.* and *.critical: one copy per queue.
            " [x] kern.critical:A critical kernel error",
            " [x] kern.critical:A critical kernel error",
            " [x] user.critical:disk full",
            " [x] user.critical:disk full",
            " [x] audit.login.root:root logged in",
            " [x] audit.login.root:root logged in",
        ],
    )
    .await;
}

/// Tutorial 6: our client calls `rpc_server.py`, `rpc_client.py` calls our
/// server, and the two servers and the two clients print the same lines.
#[tokio::test]
async fn rpc_both_ways() {
    let vhost = Vhost::new().await;
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for server_side in [Side::Python, Side::Rust] {
        let mut server = Running::ready(
            server_side.command("rpc_server", &[], &vhost),
            "Awaiting RPC requests",
        )
        .await;
        let client = run(server_side.other().command("rpc_client", &[], &vhost)).await;
        server.interrupt().await;
        servers.push(server.stdout());
        clients.push(client);
    }
    assert_eq!(clients[0], [" [x] Requesting fib(30)", " [.] Got 832040"]);
    assert_eq!(clients[0], clients[1], "our rpc_client vs rpc_client.py");
    assert_eq!(servers[0], [" [x] Awaiting RPC requests", " [.] fib(30)"]);
    assert_eq!(servers[0], servers[1], "rpc_server.py vs our rpc_server");
    vhost.delete().await;
}

/// Tutorial 7: our three strategies and pika's one-at-a-time all confirm
/// every message, and print the Java tutorial's line.
#[tokio::test]
async fn publisher_confirms_print_the_tutorial_lines() {
    let vhost = Vhost::new().await;
    let ours = run(common::rust("publisher_confirms", &["1500"], &vhost)).await;
    let pikas = run(common::python("publisher_confirms", &["1500"], &vhost)).await;
    let shape = |line: &str, middle: &str| {
        line.starts_with(&format!("Published 1,500 messages {middle} in ")) && line.ends_with(" ms")
    };
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(shape(&ours[0], "individually"), "{ours:?}");
    assert!(shape(&ours[1], "in batch"), "{ours:?}");
    assert!(
        shape(&ours[2], "and handled confirms asynchronously"),
        "{ours:?}"
    );
    assert_eq!(pikas.len(), 1, "{pikas:?}");
    assert!(shape(&pikas[0], "individually"), "{pikas:?}");
    // Every strategy used its own exclusive queue: nothing is left behind.
    assert!(vhost.queue_names().await.is_empty());
    vhost.delete().await;
}

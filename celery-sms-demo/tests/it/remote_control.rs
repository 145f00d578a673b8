//! Remote control against the real Celery 5.7 CLI, on both brokers:
//! `celery inspect`/`status`/`control revoke` see and steer our worker, our
//! `inspect`/`control` see and steer a Python worker, and a mixed cluster
//! shares revokes (broadcast, and through mingle to a worker started later).
//!
//! Every test names its own nodes (`-d` keeps other tests' workers out of
//! the answers) and its own queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::time::sleep;

/// `celery inspect METHOD -d NODE --json`, parsed.
async fn celery_inspect(kind: Kind, method: &str, node: &str) -> Value {
    let (code, stdout, stderr) =
        celery_cli(kind, &["inspect", method, "-d", node, "--json", "-t", "5"]).await;
    assert_eq!(code, Some(0), "celery inspect {method}: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

fn python_node(queue: &str) -> String {
    format!("py-{queue}@{}", shared::settings::hostname())
}

async fn celery_tools_see_our_worker(kind: Kind) {
    let queue = unique_name("ctl-see");
    let node = node_name("rust", &queue);
    let mut worker = start_worker(kind, &queue, &["-n", &node], &[]).await;

    let ping = celery_inspect(kind, "ping", &node).await;
    assert_eq!(ping[&node], serde_json::json!({"ok": "pong"}));

    let id = interop(
        kind,
        &[
            "delay", "--queue", &queue, "--task", "add", "--args", "[2, 3]",
        ],
    )
    .await;
    assert_eq!(wait_for_result(&id).await["result"], 5);
    let stats = celery_inspect(kind, "stats", &node).await;
    let stats = &stats[&node];
    assert_eq!(stats["total"]["add"], 1, "{stats}");
    assert!(stats["broker"]["transport"].is_string(), "{stats}");
    assert!(stats["pid"].as_u64().is_some() && stats["prefetch_count"].as_u64().is_some());
    assert!(stats["rusage"]["maxrss"].as_i64().is_some(), "{stats}");

    let registered = celery_inspect(kind, "registered", &node).await;
    let names: Vec<&str> = registered[&node]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"SMS") && names.contains(&"add"),
        "{names:?}"
    );

    let queues = celery_inspect(kind, "active_queues", &node).await;
    assert_eq!(queues[&node][0]["name"], queue.as_str());

    // `celery status` lists every node on the broker, ours among them.
    let (code, stdout, stderr) = celery_cli(kind, &["status", "-t", "3"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&format!("->  {node}: OK")), "{stdout}");

    worker.signal("-INT");
    assert_eq!(worker.wait().await, Some(0));
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn celery_tools_see_our_worker_on_redis() {
    celery_tools_see_our_worker(Kind::Redis).await;
}

#[tokio::test]
async fn celery_tools_see_our_worker_on_rabbitmq() {
    celery_tools_see_our_worker(Kind::Amqp).await;
}

/// `celery control revoke` of a task waiting on its countdown: it is
/// never run, REVOKED is stored, and the message is acked.
async fn celery_revoke_is_honoured(kind: Kind) {
    let queue = unique_name("ctl-revoke");
    let node = node_name("rust", &queue);
    let mut worker = start_worker(kind, &queue, &["-n", &node], &[]).await;
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--task",
            "add",
            "--args",
            "[1, 2]",
            "--countdown",
            "3",
        ],
    )
    .await;
    worker
        .wait_for_log(&format!("add[{id}] received"), 1, WAIT)
        .await;
    let (code, stdout, stderr) =
        celery_cli(kind, &["control", "revoke", &id, "-d", &node, "-t", "5"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("tasks {{'{id}'}} flagged as revoked")),
        "{stdout}"
    );

    let result = python_get(kind, &id).await;
    assert_eq!(result["state"], "REVOKED", "{result}");
    worker
        .wait_for_log(&format!("Discarding revoked task: add[{id}]"), 1, WAIT)
        .await;
    sleep(Duration::from_millis(300)).await;
    assert!(!worker.succeeded_ids().contains(&id), "a revoked task ran");
    assert_eq!(queue_length(kind, &queue).await, 0);
    worker.signal("-INT");
    assert_eq!(worker.wait().await, Some(0));
    // Acked: nothing went back to the queue at shutdown.
    assert_eq!(queue_length(kind, &queue).await, 0);
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn celery_revoke_is_honoured_on_redis() {
    celery_revoke_is_honoured(Kind::Redis).await;
}

#[tokio::test]
async fn celery_revoke_is_honoured_on_rabbitmq() {
    celery_revoke_is_honoured(Kind::Amqp).await;
}

/// Our `inspect` and `control` against a Python worker.
async fn our_cli_steers_a_python_worker(kind: Kind) {
    let queue = unique_name("ctl-py");
    let node = python_node(&queue);
    let mut python_worker = start_python_worker(kind, &queue, &[]).await;
    let broker = kind.broker();
    let ours = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend([
            "--broker".into(),
            broker.clone(),
            "-d".into(),
            node.clone(),
            "-t".into(),
            "5".into(),
        ]);
        all
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args).await
    };

    let (code, stdout, stderr) = run(ours(&["inspect", "ping"])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("->  {node}: OK")) && stdout.contains("pong"),
        "{stdout}"
    );
    assert!(stdout.contains("1 node online."), "{stdout}");

    let (code, stdout, _) = run(ours(&["inspect", "stats", "--json"])).await;
    assert_eq!(code, Some(0));
    let stats: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(stats[&node]["pool"].is_object(), "{stats}");

    let (code, stdout, _) = run(ours(&["inspect", "registered"])).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("* SMS"), "{stdout}");

    let (code, stdout, _) = run(ours(&["inspect", "active"])).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("- empty -"), "{stdout}");

    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--task",
            "add",
            "--args",
            "[4, 4]",
            "--countdown",
            "3",
        ],
    )
    .await;
    python_worker.wait_for_log(&id, 1, WAIT).await;
    let (code, stdout, stderr) = run(ours(&["control", "revoke", &id])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("flagged as revoked"), "{stdout}");
    assert_eq!(python_get(kind, &id).await["state"], "REVOKED");

    // Nobody by that name: Celery's message and exit status.
    let (code, _, stderr) = run_cli(&[
        "inspect",
        "ping",
        "--broker",
        &broker,
        "-d",
        "nobody@nowhere",
        "-t",
        "0.5",
    ])
    .await;
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains("No nodes replied within time constraint"),
        "{stderr}"
    );

    python_worker.signal("-TERM");
    python_worker.wait().await;
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn our_cli_steers_a_python_worker_on_redis() {
    our_cli_steers_a_python_worker(Kind::Redis).await;
}

#[tokio::test]
async fn our_cli_steers_a_python_worker_on_rabbitmq() {
    our_cli_steers_a_python_worker(Kind::Amqp).await;
}

/// Two Rust workers and a Python one: `celery status` lists all three, a
/// broadcast revoke reaches each, and a Rust worker started afterwards
/// learns the revoked id through mingle and refuses the task.
async fn a_mixed_cluster_shares_revokes(kind: Kind) {
    let queue = unique_name("ctl-mixed");
    let first = node_name("rust", &queue);
    let second = node_name("rust", &queue);
    let python = python_node(&queue);
    let mut rust_one = start_worker(kind, &queue, &["-n", &first], &[]).await;
    let mut rust_two = start_worker(kind, &queue, &["-n", &second], &[]).await;
    let mut python_worker = start_python_worker(kind, &queue, &[]).await;

    let (code, stdout, stderr) = celery_cli(kind, &["status", "-t", "3"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    for node in [&first, &second, &python] {
        assert!(
            stdout.contains(&format!("->  {node}: OK")),
            "{node} missing: {stdout}"
        );
    }

    // A revoke for a task nobody has seen yet, to all three at once.
    let revoked_id = uuid::Uuid::new_v4().to_string();
    let everyone = format!("{first},{second},{python}");
    let (code, stdout, stderr) = celery_cli(
        kind,
        &["control", "revoke", &revoked_id, "-d", &everyone, "-t", "5"],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    for node in [&first, &second, &python] {
        assert!(
            stdout.contains(&format!("->  {node}: OK")),
            "{node} did not answer: {stdout}"
        );
    }
    for node in [&first, &second] {
        let revoked = celery_inspect(kind, "revoked", node).await;
        assert!(
            revoked[node]
                .as_array()
                .unwrap()
                .contains(&Value::from(revoked_id.clone()))
        );
    }

    // Mingle: a worker started now asks the others and refuses the task.
    let late = node_name("rust", &queue);
    let late_queue = unique_name("ctl-late");
    let mut rust_late = start_worker(kind, &late_queue, &["-n", &late], &[]).await;
    rust_late.wait_for_log("mingle: sync with", 1, WAIT).await;
    let revoked = celery_inspect(kind, "revoked", &late).await;
    assert!(
        revoked[&late]
            .as_array()
            .unwrap()
            .contains(&Value::from(revoked_id.clone())),
        "mingle did not pass the revoked id: {revoked}"
    );
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &late_queue,
            "--task",
            "add",
            "--args",
            "[1, 1]",
            "--task-id",
            &revoked_id,
        ],
    )
    .await;
    assert_eq!(id, revoked_id);
    rust_late
        .wait_for_log(&format!("Discarding revoked task: add[{id}]"), 1, WAIT)
        .await;
    assert_eq!(python_get(kind, &id).await["state"], "REVOKED");

    for worker in [&mut rust_one, &mut rust_two, &mut rust_late] {
        worker.signal("-INT");
        assert_eq!(worker.wait().await, Some(0));
    }
    python_worker.signal("-TERM");
    python_worker.wait().await;
    delete_queue(kind, &queue).await;
    delete_queue(kind, &late_queue).await;
}

#[tokio::test]
async fn a_mixed_cluster_shares_revokes_on_redis() {
    a_mixed_cluster_shares_revokes(Kind::Redis).await;
}

#[tokio::test]
async fn a_mixed_cluster_shares_revokes_on_rabbitmq() {
    a_mixed_cluster_shares_revokes(Kind::Amqp).await;
}

/// `revoke --terminate` stops a running task at its next await: the slow
/// gateway call is dropped, REVOKED is stored, the message acked.
#[tokio::test]
async fn terminate_stops_a_running_task() {
    let kind = Kind::Redis;
    let gateway = fake_gateway::FakeGateway::start(0, Duration::from_secs(30)).await;
    let env = gateway.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let queue = unique_name("ctl-term");
    let node = node_name("rust", &queue);
    let mut worker = start_worker(kind, &queue, &["-n", &node], &env).await;
    let id = send(kind, &queue, &["13800000000", "123456"]).await;
    worker
        .wait_for_log(&format!("SMS[{id}] received"), 1, WAIT)
        .await;
    // Running: the gateway holds the call.
    let deadline = tokio::time::Instant::now() + WAIT;
    while gateway.request_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never called the gateway"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let active = celery_inspect(kind, "active", &node).await;
    assert_eq!(active[&node][0]["id"], id.as_str(), "{active}");

    let broker = kind.broker();
    let (code, stdout, stderr) = run_cli(&[
        "control",
        "revoke",
        &id,
        "--terminate",
        "--broker",
        &broker,
        "-d",
        &node,
        "-t",
        "5",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&format!("terminate: {id}")), "{stdout}");
    let result = wait_for_result(&id).await;
    assert_eq!(result["status"], "REVOKED", "{result}");
    assert_eq!(result["result"]["exc_message"][0], "terminated");
    worker.signal("-INT");
    assert_eq!(worker.wait().await, Some(0));
    assert_eq!(
        queue_length(kind, &queue).await,
        0,
        "the terminated task was not acked"
    );
    delete_queue(kind, &queue).await;
}

//! Canvas with real Python Celery 5.7, on both transports: a Python app's
//! `link`, `link_error`, chain, group and chord run on our worker and give
//! the results Python expects; chains and chords run mixed across our
//! workers and a Python one; a chord spread over three workers runs its
//! body once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use serde_json::{Value, json};

/// `interop.py canvas EXPR` with `queue` as the app's default queue.
async fn canvas(kind: Kind, queue: &str, expression: &str) -> Value {
    let output = interop(kind, &["canvas", expression, "--queue", queue]).await;
    serde_json::from_str(&output).unwrap()
}

fn succeeded_with(result: &Value, expected: Value) {
    assert_eq!(result["state"], "SUCCESS", "{result}");
    assert_eq!(result["result"], expected, "{result}");
}

async fn python_canvas_runs_on_our_worker(kind: Kind) {
    let queue = unique_name("canvas");
    let mut worker = start_worker(kind, &queue, &["-c", "8", "--default-queue", &queue], &[]).await;

    // Celery's docs: (2 + 2) * 8 + 1.
    let chain = canvas(kind, &queue, "chain(add.s(2, 2), mul.s(8), add.s(1))").await;
    succeeded_with(&chain, json!(33));
    let group = canvas(kind, &queue, "group(add.s(1, 1), add.s(2, 2), add.s(3, 3))").await;
    succeeded_with(&group, json!([2, 4, 6]));
    let chord = canvas(
        kind,
        &queue,
        "chord([add.s(i, i) for i in range(5)], xsum.s())",
    )
    .await;
    succeeded_with(&chord, json!(20));
    // A group followed by a task inside a chain is a chord Python hands to
    // the worker to start: (4 + 1) + (4 + 2), then * 3.
    let chord_in_chain = canvas(
        kind,
        &queue,
        "add.s(2, 2) | group(add.s(1), add.s(2)) | xsum.s() | mul.s(3)",
    )
    .await;
    succeeded_with(&chord_in_chain, json!(33));
    // A chain inside a chord's body.
    let chain_in_body = canvas(
        kind,
        &queue,
        "chord([add.s(1, 1), add.s(2, 2)], xsum.s() | mul.s(10))",
    )
    .await;
    succeeded_with(&chain_in_body, json!(60));

    // link: the callback gets the result in front; its result is its own.
    let link_id = unique_name("link");
    let parent = canvas(
        kind,
        &queue,
        &format!("add.apply_async((2, 2), link=mul.s(10).set(task_id='{link_id}'))"),
    )
    .await;
    succeeded_with(&parent, json!(4));
    succeeded_with(&python_get(kind, &link_id).await, json!(40));
    let parent_meta = wait_for_result(&link_id).await;
    assert_eq!(parent_meta["parent_id"], parent["id"], "{parent_meta}");

    // link_error: our `add` fails on a string (TypeError); the errback runs.
    let errback_id = unique_name("errback");
    let failed = canvas(
        kind,
        &queue,
        &format!("add.apply_async((1, 'x'), link_error=add.si(40, 2).set(task_id='{errback_id}'))"),
    )
    .await;
    assert_eq!(failed["state"], "FAILURE", "{failed}");
    assert_eq!(failed["exc_type"], "TypeError", "{failed}");
    succeeded_with(&python_get(kind, &errback_id).await, json!(42));

    // A failed step fails the rest of the chain: get() on the last one
    // raises the step's exception instead of waiting for ever.
    let broken_chain = canvas(kind, &queue, "chain(add.s(1, 'x'), mul.s(2), add.s(1))").await;
    assert_eq!(broken_chain["state"], "FAILURE", "{broken_chain}");
    assert_eq!(broken_chain["exc_type"], "TypeError", "{broken_chain}");

    // A failed header task fails the chord's body with ChordError.
    let broken_chord = canvas(
        kind,
        &queue,
        "chord([add.s(1, 1), add.s(1, 'x')], xsum.s())",
    )
    .await;
    assert_eq!(broken_chord["state"], "FAILURE", "{broken_chord}");
    assert_eq!(broken_chord["exc_type"], "ChordError", "{broken_chord}");
    let message = broken_chord["exc_message"].as_str().unwrap();
    assert!(
        message.starts_with("Dependency ") && message.contains("TypeError"),
        "{message}"
    );

    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn python_canvas_runs_on_our_worker_over_redis() {
    python_canvas_runs_on_our_worker(Kind::Redis).await;
}

#[tokio::test]
async fn python_canvas_runs_on_our_worker_over_amqp() {
    python_canvas_runs_on_our_worker(Kind::Amqp).await;
}

/// Steps on a Python worker's queue and on ours, in one chain and in one
/// chord whose header is spread over two of our workers and a Python one:
/// the results are right, and the body runs exactly once.
async fn canvas_runs_mixed_with_python_workers(kind: Kind) {
    let ours = unique_name("canvas-rust");
    let theirs = unique_name("canvas-py");
    let args = ["-c", "4", "--default-queue", ours.as_str()];
    let mut first = start_worker(kind, &ours, &args, &[]).await;
    let mut second = start_worker(kind, &ours, &args, &[]).await;
    let mut python = start_python_worker(kind, &theirs, &[("CELERY_QUEUE", ours.as_str())]).await;

    let chain = canvas(
        kind,
        &ours,
        &format!("chain(add.s(2, 2).set(queue='{theirs}'), mul.s(8), add.s(1).set(queue='{theirs}'), mul.s(2))"),
    )
    .await;
    succeeded_with(&chain, json!(66));

    // 30 header tasks, every third on the Python worker; the body on ours.
    let chord = canvas(
        kind,
        &ours,
        &format!("chord([add.s(i, i).set(queue='{theirs}' if i % 3 == 0 else '{ours}') for i in range(30)], xsum.s())"),
    )
    .await;
    succeeded_with(&chord, json!(870));
    let body = chord["id"].as_str().unwrap();
    // The worker's log is written in batches: the result can be read before
    // the line that says so. Wait (bounded) for one worker's line, then
    // count them all.
    let line = format!("Task xsum[{body}] succeeded");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !first.log_text().contains(&line) && !second.log_text().contains(&line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chord body never ran on our workers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body_runs = [&first, &second]
        .iter()
        .map(|worker| {
            worker
                .log_text()
                .matches(&format!("Task xsum[{body}] succeeded"))
                .count()
        })
        .sum::<usize>();
    assert_eq!(body_runs, 1, "the chord body ran {body_runs} times");
    let python_headers = python.log_text().matches("Task add[").count();
    assert!(
        python_headers >= 10,
        "the Python worker ran {python_headers} header tasks"
    );

    // And a chord whose body goes to the Python worker.
    let python_body = canvas(
        kind,
        &ours,
        &format!("chord([add.s(1, 1), add.s(2, 2)], xsum.s().set(queue='{theirs}'))"),
    )
    .await;
    succeeded_with(&python_body, json!(6));

    for worker in [&mut first, &mut second, &mut python] {
        worker.signal("-TERM");
        worker.wait().await;
    }
    delete_queue(kind, &ours).await;
    delete_queue(kind, &theirs).await;
}

#[tokio::test]
async fn canvas_runs_mixed_with_python_workers_over_redis() {
    canvas_runs_mixed_with_python_workers(Kind::Redis).await;
}

#[tokio::test]
async fn canvas_runs_mixed_with_python_workers_over_amqp() {
    canvas_runs_mixed_with_python_workers(Kind::Amqp).await;
}

/// `send --canvas` from Rust: a chain, a chord and a group run on a
/// Python worker, and `--wait` prints what Python computed.
async fn our_canvas_runs_on_a_python_worker(kind: Kind) {
    let queue = unique_name("canvas-to-py");
    let mut python = start_python_worker(kind, &queue, &[("CELERY_QUEUE", queue.as_str())]).await;
    let broker = kind.broker();
    let send = |expression: &'static str| {
        let (broker, queue) = (broker.clone(), queue.clone());
        async move {
            let (code, out, err) = run_cli(&[
                "send",
                "--broker",
                &broker,
                "--result-backend",
                RESULTS,
                "--queue",
                &queue,
                "--canvas",
                expression,
                "--wait",
                "--timeout",
                "30",
            ])
            .await;
            assert_eq!(code, Some(0), "{expression}: {err}");
            out.lines().skip(1).map(str::to_owned).collect::<Vec<_>>()
        }
    };
    assert_eq!(send("add(2, 2) | mul(8) | add(1)").await, ["SUCCESS 33"]);
    assert_eq!(
        send("[add(1, 1), add(2, 2), add(3, 3)] | xsum()").await,
        ["SUCCESS 12"]
    );
    assert_eq!(
        send("[add(1, 1), mul(2, 3) | add(1)]").await,
        ["SUCCESS 2", "SUCCESS 7"]
    );
    assert_eq!(
        send("add(1, 1) | [add(1), add(2)] | xsum.s() | mul.si(3, 3)").await,
        ["SUCCESS 9"]
    );

    // A mistake in the expression is one line that says where.
    let (code, _, err) =
        run_cli(&["send", "--broker", &broker, "--canvas", "add(2, 2) | mul(8"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("canvas expression, at character 18"), "{err}");

    python.signal("-TERM");
    python.wait().await;
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn our_canvas_runs_on_a_python_worker_over_redis() {
    our_canvas_runs_on_a_python_worker(Kind::Redis).await;
}

#[tokio::test]
async fn our_canvas_runs_on_a_python_worker_over_amqp() {
    our_canvas_runs_on_a_python_worker(Kind::Amqp).await;
}

//! Bad input: malformed task messages put straight onto the broker, and
//! mistakes on the command line.
//!
//! A queue is shared with producers we do not control (a Python app, an old
//! deploy, a hand-written script), so the worker must survive anything that
//! lands on it. Python Celery rejects most bad messages, but a body of two
//! elements `[args, kwargs]` kills its worker and leaves the message to kill
//! the next one (`celery-protocol.md` §A.9). Ours must instead, for every
//! kind of bad message: log it with its task id, store the FAILURE Python
//! would record (same `exc_type`/`exc_module`) when the id is readable,
//! reject it (not requeue it: on Redis nothing may be left in `unacked`, on
//! RabbitMQ a queue with a dead-letter exchange gets it), and keep running
//! the good tasks behind it. On the command line every mistake must end in
//! one `error: …` line that says what to do, a non-zero exit and no panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use celery_core::protocol::amqp_table::to_field_table;
use common::*;
use lapin::{
    BasicProperties, Confirmation,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions},
};
use serde_json::{Map, Value, json};
use shared::testing::CliOutput;
use tokio::time::{Instant, sleep};

/// `[args, kwargs, embed]` with Python's default embed.
fn body(args: Value, kwargs: Value) -> Vec<u8> {
    json!([args, kwargs, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])
        .to_string()
        .into_bytes()
}

/// Task headers as a Python producer writes them (the ones we need).
fn headers(task: &str, id: &str) -> Map<String, Value> {
    json!({
        "lang": "py", "task": task, "id": id, "shadow": null, "eta": null, "expires": null,
        "group": null, "group_index": null, "retries": 0, "timelimit": [null, null],
        "root_id": id, "parent_id": null, "argsrepr": "", "kwargsrepr": "{}",
        "origin": "gen0@bad-input-test", "ignore_result": false,
        "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {},
    })
    .as_object()
    .unwrap()
    .clone()
}

/// `pickle.dumps((('13800000000', '123456'), {}, embed), protocol=4)`:
/// what a Python app configured with `task_serializer = 'pickle'` sends.
const PICKLE_BODY: &[u8] = b"\x80\x04\x95M\x00\x00\x00\x00\x00\x00\x00\x8c\x0b13800000000\x94\x8c\x06123456\x94\x86\x94}\x94}\x94(\x8c\tcallbacks\x94N\x8c\x08errbacks\x94N\x8c\x05chain\x94N\x8c\x05chord\x94Nu\x87\x94.";

/// One bad task message, and what the worker must make of it.
struct Bad {
    what: &'static str,
    id: String,
    headers: Map<String, Value>,
    content_type: &'static str,
    content_encoding: &'static str,
    body: Vec<u8>,
    /// The stored FAILURE's `exc_type` and `exc_module`.
    exc_type: &'static str,
    exc_module: &'static str,
    /// Text the stored `exc_message[0]` must contain.
    exc_text: &'static str,
    /// A log line must contain this (it names the task id).
    log: String,
    /// Its Redis delivery tag (the key in `unacked`).
    tag: String,
    /// Rejected (so dead-lettered on a queue with a DLX), as Celery rejects
    /// what it cannot run; false for a task that ran and failed (acked).
    rejected: bool,
}

/// Messages (a)–(j): each has a task id, so each gets a FAILURE result.
fn bad_messages(queue: &str) -> Vec<Bad> {
    let new_id = || uuid::Uuid::new_v4().to_string();
    let invalid = |id: &str| format!("Received invalid task message SMS[{id}] from '{queue}': ");
    let good_args = json!(["13800000000", "123456"]);
    let mut all = Vec::new();

    let id = new_id();
    all.push(Bad {
        what: "unregistered task name",
        headers: headers("nope_unregistered", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: body(good_args.clone(), json!({})),
        exc_type: "NotRegistered",
        exc_module: "celery.exceptions",
        exc_text: "'nope_unregistered'",
        log: format!("Received unregistered task of type 'nope_unregistered'. The message has been ignored and discarded. (id {id},"),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "body that is not JSON",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: br#"[["13800000000", "123456"], {}, {"callbacks": nu"#.to_vec(),
        exc_type: "DecodeError",
        exc_module: "kombu.exceptions",
        exc_text: "not valid JSON",
        log: format!("{}message body is not valid JSON", invalid(&id)),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "body [args, kwargs] (kills a Python worker)",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: json!([good_args.clone(), {}]).to_string().into_bytes(),
        exc_type: "ValueError",
        exc_module: "builtins",
        exc_text: "expected 3 elements, got 2",
        log: format!("{}message body must be the list", invalid(&id)),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "one argument for two parameters",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: body(json!(["13800000000"]), json!({})),
        exc_type: "TypeError",
        exc_module: "builtins",
        exc_text: "send_sms_code() missing 1 required positional argument: 'sms_code'",
        log: format!("Task SMS[{id}] raised unexpected: TypeError("),
        tag: new_id(),
        rejected: false,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "mobile of the wrong type (a list)",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: body(json!([["13800000000"], "123456"]), json!({})),
        exc_type: "TypeError",
        exc_module: "builtins",
        exc_text: "mobile",
        log: format!("Task SMS[{id}] raised unexpected: TypeError("),
        tag: new_id(),
        rejected: false,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "pickle content type",
        headers: headers("SMS", &id),
        content_type: "application/x-python-serialize",
        content_encoding: "binary",
        body: PICKLE_BODY.to_vec(),
        exc_type: "ContentDisallowed",
        exc_module: "kombu.exceptions",
        exc_text: "application/x-python-serialize",
        log: format!(
            "{}refusing to deserialize content of type application/x-python-serialize",
            invalid(&id)
        ),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    let mut wrong_header = headers("SMS", &id);
    wrong_header.insert("retries".into(), json!("two"));
    all.push(Bad {
        what: "header of the wrong type (retries: \"two\")",
        headers: wrong_header,
        content_type: "application/json",
        content_encoding: "utf-8",
        body: body(good_args, json!({})),
        exc_type: "ValueError",
        exc_module: "builtins",
        exc_text: "'retries'",
        log: format!("{}header 'retries' must be an integer", invalid(&id)),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "body that is not a list",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "utf-8",
        body: br#"{"args": ["13800000000", "123456"]}"#.to_vec(),
        exc_type: "ValueError",
        exc_module: "builtins",
        exc_text: "got an object",
        log: format!("{}message body must be the list", invalid(&id)),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "YAML content type",
        headers: headers("SMS", &id),
        content_type: "application/x-yaml",
        content_encoding: "utf-8",
        body: b"- ['13800000000', '123456']\n- {}\n- {}\n".to_vec(),
        exc_type: "ContentDisallowed",
        exc_module: "kombu.exceptions",
        exc_text: "application/x-yaml",
        log: format!(
            "{}refusing to deserialize content of type application/x-yaml",
            invalid(&id)
        ),
        tag: new_id(),
        rejected: true,
        id,
    });

    let id = new_id();
    all.push(Bad {
        what: "2 MB of junk for a body",
        headers: headers("SMS", &id),
        content_type: "application/json",
        content_encoding: "binary",
        body: junk(2 * 1024 * 1024),
        exc_type: "DecodeError",
        exc_module: "kombu.exceptions",
        exc_text: "not valid JSON",
        log: format!("{}message body is not valid JSON", invalid(&id)),
        tag: new_id(),
        rejected: true,
        id,
    });
    all
}

/// `size` bytes that are not JSON (nor UTF-8): a xorshift stream, so the
/// same every run.
fn junk(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(size);
    bytes.push(0xff);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// The kombu envelope (`celery-protocol.md` §A.1) around one message.
fn envelope(
    headers: &Map<String, Value>,
    content_type: &str,
    content_encoding: &str,
    body: &[u8],
    queue: &str,
    tag: &str,
) -> String {
    let id = headers.get("id").cloned().unwrap_or(Value::Null);
    json!({
        "body": BASE64.encode(body),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            "correlation_id": id,
            "reply_to": "bad-input-test",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    })
    .to_string()
}

async fn lpush(queue: &str, raw: &str) {
    let mut connection = redis(REDIS_BROKER).await;
    let _: usize = redis::cmd("LPUSH")
        .arg(queue)
        .arg(raw)
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// Publishes raw to the default exchange with routing key `queue`, as
/// Celery does, and waits for RabbitMQ's confirm (mandatory: an unroutable
/// message fails the test instead of vanishing).
async fn publish(queue: &str, properties: BasicProperties, body: &[u8]) {
    let connection = shared::testing::test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirmation, Confirmation::Ack(None)),
        "publish to '{queue}' not confirmed: {confirmation:?}"
    );
    let _ = connection.close(200, "bye".into()).await;
}

fn amqp_properties(
    headers: Option<&Map<String, Value>>,
    content_type: &str,
    content_encoding: &str,
) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_content_type(content_type.into())
        .with_content_encoding(content_encoding.into())
        .with_delivery_mode(2);
    if let Some(headers) = headers {
        properties = properties.with_headers(to_field_table(headers));
        if let Some(id) = headers.get("id").and_then(Value::as_str) {
            properties = properties.with_correlation_id(id.into());
        }
    }
    properties
}

async fn redis_has_tag(tag: &str) -> bool {
    let mut connection = redis(REDIS_BROKER).await;
    let in_hash: bool = redis::cmd("HEXISTS")
        .arg("unacked")
        .arg(tag)
        .query_async(&mut connection)
        .await
        .unwrap();
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("unacked_index")
        .arg(tag)
        .query_async(&mut connection)
        .await
        .unwrap();
    in_hash || score.is_some()
}

/// Tags still in `unacked`/`unacked_index`, waiting up to `within` for
/// them to go (settlements are written in batches, a moment after the result).
async fn lingering_tags(tags: &[String], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let mut left = Vec::new();
        for tag in tags {
            if redis_has_tag(tag).await {
                left.push(tag.clone());
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes result keys (db 13) and "SMS sent" records (db 12 or 13).
async fn delete_task_keys(ids: &[String]) {
    for (url, keys) in [
        (
            RESULTS,
            ids.iter()
                .flat_map(|id| [format!("celery-task-meta-{id}"), format!("sms-sent-{id}")])
                .collect::<Vec<_>>(),
        ),
        (
            REDIS_BROKER,
            ids.iter().map(|id| format!("sms-sent-{id}")).collect(),
        ),
    ] {
        let mut connection = redis(url).await;
        let _: usize = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// Good tasks sent after the poison: every one of them must run.
const GOOD_BEHIND: usize = 5;

/// The poison corpus through one queue, then good tasks behind it.
/// `dead_letters`: the queue was declared with a dead-letter exchange
/// routing to this queue (AMQP only).
async fn survives_malformed_messages(kind: Kind, queue: &str, dead_letters: Option<&str>) {
    let mut worker = start_worker(kind, queue, &["-c", "2"], &[]).await;
    let bad = bad_messages(queue);

    // Messages with no readable task id: no result is possible, the worker
    // must just log them, reject them and go on.
    let mut anonymous_logs = Vec::new();
    let mut anonymous_tags = Vec::new();
    let no_id = {
        let mut headers = headers("SMS", "unused");
        headers.remove("id");
        headers
    };
    let no_id_log =
        format!("Received invalid task message SMS[?] from '{queue}': header 'id' is missing");
    match kind {
        Kind::Redis => {
            for message in &bad {
                let raw = envelope(
                    &message.headers,
                    message.content_type,
                    message.content_encoding,
                    &message.body,
                    queue,
                    &message.tag,
                );
                lpush(queue, &raw).await;
            }
            // (k) An envelope that is not JSON at all.
            lpush(queue, "this is not a kombu envelope {").await;
            anonymous_logs.push(format!(
                "Received invalid task message ?[?] from '{queue}': malformed message envelope: expected"
            ));
            // (l) A JSON envelope without headers: it is recorded in
            // `unacked` under its tag, so that entry must go too.
            let tag = uuid::Uuid::new_v4().to_string();
            let no_headers = json!({
                "body": BASE64.encode(body(json!(["13800000000", "123456"]), json!({}))),
                "content-encoding": "utf-8", "content-type": "application/json",
                "properties": {"delivery_info": {"exchange": "", "routing_key": queue},
                               "body_encoding": "base64", "delivery_tag": tag},
            });
            lpush(queue, &no_headers.to_string()).await;
            anonymous_logs.push(format!(
                "Received invalid task message ?[?] from '{queue}': malformed message envelope: 'headers' must be an object"
            ));
            anonymous_tags.push(tag);
            // (m) Headers without an id.
            let tag = uuid::Uuid::new_v4().to_string();
            let good_body = body(json!(["13800000000", "123456"]), json!({}));
            let raw = envelope(&no_id, "application/json", "utf-8", &good_body, queue, &tag);
            lpush(queue, &raw).await;
            anonymous_logs.push(no_id_log);
            anonymous_tags.push(tag);
        }
        Kind::Amqp => {
            for message in &bad {
                publish(
                    queue,
                    amqp_properties(
                        Some(&message.headers),
                        message.content_type,
                        message.content_encoding,
                    ),
                    &message.body,
                )
                .await;
            }
            // (k) A message with no headers at all (no task, no id).
            let good_body = body(json!(["13800000000", "123456"]), json!({}));
            publish(
                queue,
                amqp_properties(None, "application/json", "utf-8"),
                &good_body,
            )
            .await;
            anonymous_logs.push(format!(
                "Received invalid task message ?[?] from '{queue}': header 'task' is missing"
            ));
            // (m) Headers without an id.
            publish(
                queue,
                amqp_properties(Some(&no_id), "application/json", "utf-8"),
                &good_body,
            )
            .await;
            anonymous_logs.push(no_id_log);
        }
    }

    // The worker survived all of it: every good task behind the poison runs
    // (our producer, too, accepts a queue declared with arguments).
    let mut good = Vec::new();
    for _ in 0..GOOD_BEHIND {
        good.push(send(kind, queue, &["13800000000", "123456"]).await);
    }
    for id in &good {
        let result = wait_for_result(id).await;
        assert_eq!(
            result["status"],
            "SUCCESS",
            "{result}\nlog:\n{}",
            worker.log_text()
        );
    }

    for message in &bad {
        let result = wait_for_result(&message.id).await;
        let what = message.what;
        assert_eq!(result["status"], "FAILURE", "{what}: {result}");
        assert_eq!(result["task_id"], message.id.as_str(), "{what}: {result}");
        assert_eq!(
            result["result"]["exc_type"], message.exc_type,
            "{what}: {result}"
        );
        assert_eq!(
            result["result"]["exc_module"], message.exc_module,
            "{what}: {result}"
        );
        let text = result["result"]["exc_message"][0].as_str().unwrap_or("");
        assert!(
            text.contains(message.exc_text),
            "{what}: '{}' not in {result}",
            message.exc_text
        );
        worker.wait_for_log(&message.log, 1, WAIT).await;
    }
    // Python's exact text for the wrong argument count.
    let missing = stored_result(&bad[3].id).await.unwrap();
    assert_eq!(
        missing["result"]["exc_message"],
        json!(["send_sms_code() missing 1 required positional argument: 'sms_code'"]),
        "{missing}"
    );
    for needle in &anonymous_logs {
        worker.wait_for_log(needle, 1, WAIT).await;
    }

    // Rejected or acked, not requeued nor held: nothing waits in the queue,
    // nothing is left unacknowledged while the worker is still running.
    assert_eq!(queue_length(kind, queue).await, 0);
    let tags: Vec<String> = bad
        .iter()
        .map(|message| message.tag.clone())
        .chain(anonymous_tags)
        .collect();
    match kind {
        Kind::Redis => {
            let left = lingering_tags(&tags, Duration::from_secs(10)).await;
            assert!(left.is_empty(), "still in unacked: {left:?}");
        }
        Kind::Amqp => assert_nothing_unacked(queue).await,
    }

    if let Some(dlq) = dead_letters {
        let rejected: Vec<&Bad> = bad.iter().filter(|message| message.rejected).collect();
        assert_dead_lettered(dlq, &rejected, anonymous_logs.len()).await;
    }

    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    let log = worker.log_text();
    assert!(!log.contains("panicked"), "{log}");
    // A warm shutdown gives back what it still holds: had any bad message
    // been held instead of rejected, it would be back in the queue now.
    assert_eq!(queue_length(kind, queue).await, 0, "{log}");
    if kind == Kind::Redis {
        let left = lingering_tags(&tags, Duration::ZERO).await;
        assert!(left.is_empty(), "still in unacked after exit: {left:?}");
    }

    delete_queue(kind, queue).await;
    let mut ids: Vec<String> = bad.iter().map(|message| message.id.clone()).collect();
    ids.extend(good);
    delete_task_keys(&ids).await;
}

/// Waits (bounded) until RabbitMQ counts no unacknowledged message on `queue`.
async fn assert_nothing_unacked(queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let name = queue.to_owned();
        let counts = tokio::task::spawn_blocking(move || shared::testing::queue_counts(&name))
            .await
            .unwrap();
        if counts == Some((0, 0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "'{queue}' (ready, unacked) = {counts:?}, expected (0, 0)"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

/// Every rejected message (and `anonymous` ones without an id) is in the
/// dead-letter queue, dead-lettered as "rejected"; nothing else is.
async fn assert_dead_lettered(dlq: &str, rejected: &[&Bad], anonymous: usize) {
    let expected = rejected.len() + anonymous;
    let deadline = Instant::now() + WAIT;
    while (shared::testing::ready_count(dlq).await as usize) < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} rejected messages reached '{dlq}'",
            shared::testing::ready_count(dlq).await
        );
        sleep(Duration::from_millis(50)).await;
    }
    let connection = shared::testing::test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    let mut dead_ids = Vec::new();
    while let Some(dead) = channel
        .basic_get(dlq.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let headers = dead
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(celery_core::protocol::amqp_table::from_field_table)
            .unwrap_or_default();
        assert_eq!(headers["x-death"][0]["reason"], "rejected", "{headers:?}");
        if let Some(id) = headers.get("id").and_then(Value::as_str) {
            let message = rejected.iter().find(|message| message.id == id);
            let message = message.unwrap_or_else(|| panic!("{id} should not be dead-lettered"));
            // The very message: 2 MB of junk is dead-lettered whole.
            assert_eq!(dead.delivery.data, message.body, "{}", message.what);
            dead_ids.push(id.to_owned());
        }
    }
    let _ = connection.close(200, "bye".into()).await;
    assert_eq!(
        dead_ids.len(),
        rejected.len(),
        "dead-lettered: {dead_ids:?}"
    );
}

#[tokio::test]
async fn survives_malformed_messages_over_redis() {
    survives_malformed_messages(Kind::Redis, &unique_name("bad-input"), None).await;
}

#[tokio::test]
async fn survives_malformed_messages_over_amqp() {
    survives_malformed_messages(Kind::Amqp, &unique_name("bad-input"), None).await;
}

/// A queue the operator declared with a dead-letter exchange: the worker
/// uses it as it is, and every message it rejects ends up in the
/// dead-letter queue instead of being lost.
#[tokio::test]
async fn rejected_messages_are_dead_lettered_over_amqp() {
    let queue = unique_name("dlx");
    let dlq = format!("{queue}.dlq");
    declare_dead_lettered_queue(&queue, &dlq, json!({})).await;

    survives_malformed_messages(Kind::Amqp, &queue, Some(&dlq)).await;
    shared::testing::delete_queue(&dlq).await;
}

/// Runs the CLI and returns its output in the shared bad-input shape.
async fn cli(args: &[&str]) -> CliOutput {
    let (code, stdout, stderr) = run_cli(args).await;
    CliOutput {
        code,
        stdout,
        stderr,
    }
}

const SMS: [&str; 3] = ["send", "13800000000", "123456"];

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test]
async fn unknown_broker_scheme() {
    cli(&with(&SMS, &["--broker", "ftp://x"]))
        .await
        .assert_one_line_error(&["unsupported broker URL", "ftp://x", "redis://", "amqp://"]);
}

#[tokio::test]
async fn redis_down_says_how_to_start_it() {
    cli(&with(
        &SMS,
        &[
            "--broker",
            "redis://127.0.0.1:1/0",
            "--connect-timeout",
            "2",
        ],
    ))
    .await
    .assert_one_line_error(&["Redis is not reachable", "127.0.0.1:1", "redis-server"]);
}

#[tokio::test]
async fn rabbitmq_down_says_how_to_start_it() {
    let started = Instant::now();
    let output = cli(&with(
        &SMS,
        &[
            "--broker",
            "amqp://guest:guest@127.0.0.1:1/%2f",
            "--connect-timeout",
            "1",
        ],
    ))
    .await;
    output.assert_one_line_error(&[
        "RabbitMQ is not reachable",
        "127.0.0.1:1",
        "rabbitmq-server -detached",
    ]);
    assert!(
        !output.stderr.contains("guest:guest"),
        "password shown: {}",
        output.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "--connect-timeout 1 took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn worker_with_redis_down_exits() {
    let queue = unique_name("no-redis");
    cli(&[
        "worker",
        "-Q",
        &queue,
        "--broker",
        "redis://127.0.0.1:1/0",
        "--connect-timeout",
        "2",
    ])
    .await
    .assert_one_line_error(&["Redis is not reachable", "127.0.0.1:1"]);
}

#[tokio::test]
async fn send_args_that_are_not_a_json_list() {
    cli(&["send", "--args", "[1, 2"])
        .await
        .assert_one_line_error(&["--args", "not JSON", "expected a list"]);
    cli(&["send", "--kwargs", "[1]"])
        .await
        .assert_one_line_error(&["--kwargs", "expected a JSON object"]);
}

#[tokio::test]
async fn wait_without_a_result_backend() {
    cli(&["send", "1", "2", "--wait"])
        .await
        .assert_one_line_error(&["--wait", "--result-backend"]);
}

#[tokio::test]
async fn result_without_a_backend() {
    cli(&["result", "some-id"])
        .await
        .assert_one_line_error(&["result backend", "--result-backend"]);
}

#[tokio::test]
async fn eta_that_is_not_a_time() {
    let output = cli(&with(&SMS, &["--eta", "notatime"])).await;
    assert_eq!(output.code, Some(2), "{output:?}");
    output.assert_one_line_error(&["--eta", "notatime", "ISO-8601"]);
}

// What follows pins down faults found (and fixed) while writing the tests above.

#[tokio::test]
async fn worker_with_redis_down_fails_as_fast_as_send() {
    let queue = unique_name("no-redis");
    let started = Instant::now();
    let output = cli(&[
        "worker",
        "-Q",
        &queue,
        "--broker",
        "redis://127.0.0.1:1/0",
        "--connect-timeout",
        "2",
    ])
    .await;
    output.assert_one_line_error(&["Redis is not reachable"]);
    // One bounded connect (--connect-timeout 2), not several in a row.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}: {}",
        started.elapsed(),
        output.stderr
    );
}

#[tokio::test]
async fn rabbitmq_down_hint_names_the_broker_option() {
    let output = cli(&with(
        &SMS,
        &[
            "--broker",
            "amqp://guest:guest@127.0.0.1:1/%2f",
            "--connect-timeout",
            "1",
        ],
    ))
    .await;
    output.assert_one_line_error(&["--broker"]);
    assert!(!output.stderr.contains("--amqp-url"), "{}", output.stderr);
}

#[tokio::test]
async fn redis_down_names_the_cause_once() {
    let output = cli(&with(
        &SMS,
        &[
            "--broker",
            "redis://127.0.0.1:1/0",
            "--connect-timeout",
            "2",
        ],
    ))
    .await;
    output.assert_one_line_error(&["Redis is not reachable"]);
    assert_eq!(
        output.stderr.matches("Connection refused").count(),
        1,
        "{}",
        output.stderr
    );
}

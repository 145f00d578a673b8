//! A task declared blocking runs on the worker's blocking pool, not on its
//! event loop: while two tasks each spin a CPU for 200 ms, `noop`s sent at
//! the same moment still finish within a few milliseconds. (On the event
//! loop they would wait the full 200 ms behind the spinners.)

use std::time::{Duration, Instant};

use celery_core::{
    backend::ResultBackend,
    protocol::{SendOptions, TaskMessage, redis_envelope, time::parse_celery_time as parse_time},
    redis_connection::RedisOptions,
    registry::Registry,
    task::{Task, TaskResult},
    worker::{self, ShutdownSignals, WorkerConfig},
};
use chrono::{DateTime, Utc};
use shared::testing::unique_name;

const BROKER: &str = "redis://127.0.0.1:6379/12";
const RESULTS: &str = "redis://127.0.0.1:6379/13";

fn spin_for(wanted: Duration) {
    let started = Instant::now();
    while started.elapsed() < wanted {
        std::hint::spin_loop();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cpu_bound_task_does_not_delay_the_others() {
    let queue = unique_name("blocking-pool");
    let registry = Registry::new()
        .register(Task::blocking("spin", &["ms"], |(ms,): (u64,)| {
            spin_for(Duration::from_millis(ms));
            TaskResult::Ok(ms)
        }))
        .register(Task::new("noop", &[], |(): ()| async {
            TaskResult::Ok(())
        }));
    let mut config = WorkerConfig::new(BROKER);
    config.result_backend = Some(RESULTS.into());
    config.queues = vec![queue.clone()];
    config.blocking_pool = 2;
    let signals = ShutdownSignals::default();
    let worker = tokio::spawn(worker::run(config, registry, signals.clone()));

    let backend = ResultBackend::connect(
        RESULTS,
        &RedisOptions::with_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let client = redis::Client::open(BROKER).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let message = |task: &str, args| {
        TaskMessage::new(task, args, Default::default(), &SendOptions::default())
    };
    // Warm up (connections, the pool's threads), so only the spin is measured.
    let warm_up = message("noop", vec![]);
    push(&mut redis, &queue, &warm_up).await;
    wait_done(&backend, &warm_up.headers.id).await;

    let spinners: Vec<_> = (0..2)
        .map(|_| message("spin", vec![serde_json::json!(200)]))
        .collect();
    let noops: Vec<_> = (0..5).map(|_| message("noop", vec![])).collect();
    for spinner in &spinners {
        push(&mut redis, &queue, spinner).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut lags = Vec::new();
    for noop in &noops {
        let sent = Utc::now();
        push(&mut redis, &queue, noop).await;
        let done = wait_done(&backend, &noop.headers.id).await;
        lags.push((done - sent).num_milliseconds());
    }
    let spun = wait_done(&backend, &spinners[0].headers.id).await;
    println!("noop send-to-result while two tasks spin: {lags:?} ms");
    assert!(
        noops_all_before(&backend, &noops, spun).await,
        "a noop finished after the 200 ms spin: the event loop was stalled"
    );
    assert!(
        lags.iter().all(|lag| *lag < 100),
        "noops waited: {lags:?} ms"
    );

    signals.warm.cancel();
    worker.await.unwrap().unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&queue)
        .query_async(&mut redis)
        .await
        .unwrap();
}

async fn push(redis: &mut redis::aio::MultiplexedConnection, queue: &str, message: &TaskMessage) {
    let _: i64 = redis::cmd("LPUSH")
        .arg(queue)
        .arg(redis_envelope::encode(message, queue))
        .query_async(redis)
        .await
        .unwrap();
}

/// Waits for a result; returns its `date_done`.
async fn wait_done(backend: &ResultBackend, id: &str) -> DateTime<Utc> {
    let stored = backend
        .subscribe(id)
        .await
        .unwrap()
        .wait(Duration::from_secs(30))
        .await
        .unwrap();
    parse_time(stored.date_done.as_deref().unwrap()).unwrap()
}

async fn noops_all_before(
    backend: &ResultBackend,
    noops: &[TaskMessage],
    spun: DateTime<Utc>,
) -> bool {
    for noop in noops {
        let stored = backend.get(&noop.headers.id).await.unwrap().unwrap();
        if parse_time(stored.date_done.as_deref().unwrap()).unwrap() >= spun {
            return false;
        }
    }
    true
}

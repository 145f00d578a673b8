//! What a running task does through its request, on a worker run
//! in-process with Redis as broker and result backend: report a custom
//! state (`update_state`), send a canvas (`send`, recorded as the result's
//! children), and replace itself (`TaskError::replace`) inside a chain and
//! with a group.

use std::time::Duration;

use celery_core::{
    backend::{ResultBackend, StoredResult, TaskState},
    canvas::Signature,
    protocol::{SendOptions, TaskMessage, redis_envelope},
    redis_connection::RedisOptions,
    registry::Registry,
    task::{Request, Task, TaskError, TaskResult, TaskResultExt},
    worker::{self, ShutdownSignals, WorkerConfig},
};
use serde_json::{Value, json};
use shared::testing::unique_name;

const BROKER: &str = "redis://127.0.0.1:6379/12";
const RESULTS: &str = "redis://127.0.0.1:6379/13";

fn tasks() -> Registry {
    let add = Task::new("add", &["x", "y"], |(x, y): (i64, i64)| async move {
        TaskResult::Ok(x + y)
    });
    // Reports PROGRESS, then waits for the test to say go.
    let progress = Task::bound(
        "progress",
        &["go_key"],
        |request: Request, (go_key,): (String,)| async move {
            request
                .update_state("PROGRESS", json!({"current": 1, "total": 2}))
                .await?;
            let client = redis::Client::open(BROKER).or_fail()?;
            let mut redis = client.get_multiplexed_async_connection().await.or_fail()?;
            let _: Option<(String, String)> = redis::cmd("BLPOP")
                .arg(&go_key)
                .arg(30)
                .query_async(&mut redis)
                .await
                .or_fail()?;
            Ok("done")
        },
    );
    // def chain_add(x, y): (add.s(x, x) | add.s(y)).apply_async()
    let chain_add = Task::bound(
        "chain_add",
        &["x", "y"],
        |request: Request, (x, y): (i64, i64)| async move {
            let chain = Signature::chain(vec![
                Signature::new("add", vec![json!(x), json!(x)]),
                Signature::new("add", vec![json!(y)]),
            ]);
            let awaited = request.send(chain).await?;
            Ok(awaited.ids().join(","))
        },
    );
    let add_replaced = Task::new(
        "add_replaced",
        &["x", "y"],
        |(x, y): (i64, i64)| async move {
            TaskResult::<()>::Err(TaskError::replace(Signature::new(
                "add",
                vec![json!(x), json!(y)],
            )))
        },
    );
    let add_to_all = Task::new(
        "add_to_all",
        &["nums", "val"],
        |(nums, val): (Vec<i64>, i64)| async move {
            let adds = nums
                .into_iter()
                .map(|num| Signature::new("add", vec![json!(num), json!(val)]))
                .collect();
            TaskResult::<()>::Err(TaskError::replace(Signature::group(adds)))
        },
    );
    [add, progress, chain_add, add_replaced, add_to_all]
        .into_iter()
        .fold(Registry::new(), Registry::register)
}

struct Harness {
    queue: String,
    redis: redis::aio::MultiplexedConnection,
    backend: ResultBackend,
}

impl Harness {
    async fn send(&mut self, message: &TaskMessage) {
        let _: i64 = redis::cmd("LPUSH")
            .arg(&self.queue)
            .arg(redis_envelope::encode(message, &self.queue))
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }

    async fn result(&self, id: &str) -> StoredResult {
        self.backend
            .subscribe(id)
            .await
            .unwrap()
            .wait(Duration::from_secs(30))
            .await
            .unwrap()
    }
}

fn message(task: &str, args: Value) -> TaskMessage {
    let Value::Array(args) = args else {
        panic!("args are a list")
    };
    TaskMessage::new(task, args, Default::default(), &SendOptions::default())
}

#[tokio::test]
async fn a_task_reports_progress_sends_a_canvas_and_replaces_itself() {
    let queue = unique_name("in-task");
    let mut config = WorkerConfig::new(BROKER);
    config.result_backend = Some(RESULTS.into());
    config.queues = vec![queue.clone()];
    // Follow-ups and replacements come back to this worker.
    config.default_queue = queue.clone();
    config.mingle = false;
    config.banner = false;
    let signals = ShutdownSignals::default();
    let worker = tokio::spawn(worker::run(config, tasks(), signals.clone()));
    let client = redis::Client::open(BROKER).unwrap();
    let backend = ResultBackend::connect(
        RESULTS,
        &RedisOptions::with_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let mut harness = Harness {
        queue: queue.clone(),
        redis: client.get_multiplexed_async_connection().await.unwrap(),
        backend,
    };

    // update_state: PROGRESS with its meta while it runs, SUCCESS after.
    let go_key = unique_name("in-task-go");
    let progress = message("progress", json!([go_key]));
    harness.send(&progress).await;
    let mut seen = None;
    for _ in 0..300 {
        if let Some(stored) = harness.backend.get(&progress.headers.id).await.unwrap()
            && stored.status == TaskState::Custom("PROGRESS".into())
        {
            seen = Some(stored);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.expect("the task never reported PROGRESS");
    assert_eq!(seen.result, json!({"current": 1, "total": 2}));
    assert!(seen.date_done.is_none(), "PROGRESS is not a final state");
    let _: i64 = redis::cmd("RPUSH")
        .arg(&go_key)
        .arg("go")
        .query_async(&mut harness.redis)
        .await
        .unwrap();
    assert_eq!(
        harness.result(&progress.headers.id).await.result,
        json!("done")
    );

    // send: the chain runs, and its last step is the task's child.
    let chain_add = message("chain_add", json!([3, 4]));
    harness.send(&chain_add).await;
    let stored = harness.result(&chain_add.headers.id).await;
    let last = stored.result.as_str().unwrap().to_owned();
    assert_eq!(stored.children, vec![json!([[last, null], null])]);
    assert_eq!(harness.result(&last).await.result, json!(10));

    // replace, mid-chain: the replacement takes the id, the chain goes on.
    let mut chain = message("add_replaced", json!([4, 5]));
    let after_id = unique_name("after-replaced");
    let rest = Signature::new("add", vec![json!(100)]).with_option("task_id", after_id.clone());
    chain.embed.chain = json!([rest.to_value()]);
    harness.send(&chain).await;
    assert_eq!(harness.result(&chain.headers.id).await.result, json!(9));
    assert_eq!(harness.result(&after_id).await.result, json!(109));

    // replace with a group: chorded onto celery.accumulate, which takes the id.
    let add_to_all = message("add_to_all", json!([[1, 2, 3], 10]));
    harness.send(&add_to_all).await;
    let stored = harness.result(&add_to_all.headers.id).await;
    assert_eq!(stored.status, TaskState::Success);
    assert_eq!(stored.result, json!([11, 12, 13]));

    signals.warm.cancel();
    worker.await.unwrap().unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&queue)
        .arg(&go_key)
        .query_async(&mut harness.redis)
        .await
        .unwrap();
}

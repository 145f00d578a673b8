//! The README's "Your own task", run as a reader would run it: the worker of
//! `examples/your_own_task.rs` (built by `cargo test`) on the real Redis,
//! called by name from a real Python Celery 5.7 client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use shared::testing::unique_name;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    time::timeout,
};

const BROKER: &str = "redis://127.0.0.1:6379/12";
const RESULTS: &str = "redis://127.0.0.1:6379/13";

/// `cargo test` builds the examples beside the test binaries' `deps/`.
fn example() -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile.join("examples").join("your_own_task");
    assert!(
        path.exists(),
        "{} is missing: cargo test builds it",
        path.display()
    );
    path
}

/// What a Python app does: call the Rust tasks by name and print the results.
const CLIENT: &str = r#"
import os, sys
from celery import Celery
app = Celery(broker=os.environ['BROKER'], backend=os.environ['RESULTS'])
queue = os.environ['QUEUE']
print(app.send_task('word_count', args=['the quick brown fox'], queue=queue).get(timeout=30))
print(app.send_task('fib', kwargs={'n': 90}, queue=queue).get(timeout=30))
try:
    app.send_task('fib', args=[100], queue=queue).get(timeout=30)
except Exception as exc:
    print(type(exc).__name__, exc)
sys.stdout.flush()
os._exit(0)
"#;

#[tokio::test]
async fn a_python_client_calls_the_example_worker() {
    let queue = unique_name("your-own-task");
    let mut worker = Command::new(example())
        .args(["worker", "--without-mingle"])
        .env("CELERY_BROKER_URL", BROKER)
        .env("CELERY_RESULT_BACKEND", RESULTS)
        .env("CELERY_TASK_DEFAULT_QUEUE", &queue)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(worker.stderr.take().unwrap()).lines();
    timeout(Duration::from_secs(60), async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains(" ready.") {
                return;
            }
        }
        panic!("the example worker ended before it was ready");
    })
    .await
    .expect("the example worker did not start");

    let client = timeout(
        Duration::from_secs(90),
        Command::new(shared::testing::venv_python())
            .args(["-c", CLIENT])
            .env("BROKER", BROKER)
            .env("RESULTS", RESULTS)
            .env("QUEUE", &queue)
            .output(),
    )
    .await
    .expect("the Python client timed out")
    .unwrap();
    let printed = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        [
            "4",
            "2880067194370816120",
            "ValueError fib(100) does not fit in 64 bits"
        ]
    );

    shared::testing::send_signal(worker.id().unwrap(), "-TERM");
    let status = timeout(Duration::from_secs(30), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the example worker exited with {status}");
}

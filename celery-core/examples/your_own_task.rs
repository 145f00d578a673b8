//! Your own task: a Celery worker for tasks of your own, written in Rust,
//! that Python apps call by name — next to their Python workers.
//!
//! ```text
//! cargo run -p celery-core --example your_own_task      # a worker on the blog's broker
//! ```
//!
//! and from any Python Celery app on the same broker:
//!
//! ```python
//! >>> app.send_task('word_count', args=['the quick brown fox']).get()
//! 4
//! >>> app.send_task('fib', args=[90]).get()
//! 2880067194370816120
//! ```
//!
//! Set `CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND` and `CELERY_QUEUE` to
//! point it elsewhere; Ctrl-C stops it warmly, a second Ctrl-C at once.

use celery_core::{
    registry::Registry,
    task::{Task, TaskError, TaskResult},
    worker::{self, ShutdownSignals, WorkerConfig},
};
use shared::{Shutdown, logging, settings::LogLevel};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let _log = logging::init(LogLevel::Info);
    // Created first: from here on Ctrl-C and SIGTERM stop the worker cleanly.
    let shutdown = Shutdown::new()?;

    // An async task: `@app.task(name='word_count') def word_count(text): …`
    let word_count = Task::new("word_count", &["text"], |(text,): (String,)| async move {
        TaskResult::Ok(text.split_whitespace().count())
    });
    // A CPU-bound task: on the blocking pool, so it never stalls the others.
    let fib = Task::blocking("fib", &["n"], |(n,): (u32,)| {
        if n > 92 {
            return Err(TaskError::fail(
                "ValueError",
                "builtins",
                format!("fib({n}) does not fit in 64 bits"),
            ));
        }
        let (mut a, mut b) = (0u64, 1u64);
        for _ in 0..n {
            (a, b) = (b, a.saturating_add(b));
        }
        Ok(a)
    });
    let registry = Registry::new().register(word_count).register(fib);

    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut config = WorkerConfig::new(env("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7"));
    config.result_backend = std::env::var("CELERY_RESULT_BACKEND").ok();
    config.queues = vec![env("CELERY_QUEUE", "celery")];
    config.app_name = "your_own_task".to_owned();
    config.banner = true;

    worker::run(config, registry, ShutdownSignals::on(shutdown)).await?;
    Ok(())
}

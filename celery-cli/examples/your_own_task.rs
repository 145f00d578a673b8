//! Your own task: a Celery worker for tasks of your own, written in Rust,
//! that Python apps call by name — next to their Python workers. The whole
//! `celery` command comes with it: `worker -c 8 -Q q -E`, `beat`, `send`,
//! `result`, `inspect`, `control`, `status`.
//!
//! ```text
//! cargo run -p celery-cli --example your_own_task -- worker -l info   # a worker on the blog's broker
//! cargo run -p celery-cli --example your_own_task -- send --task fib --args '[90]' --wait \
//!     --result-backend redis://127.0.0.1:6379/8
//! cargo run -p celery-cli --example your_own_task -- --help
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
//! `CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND` and `CELERY_TASK_DEFAULT_QUEUE`
//! (or `--broker`, `--result-backend`, `-Q`) point it elsewhere; Ctrl-C
//! stops it warmly, a second Ctrl-C at once.

use std::process::ExitCode;

use celery_cli::App;
use celery_core::{
    registry::Registry,
    task::{Task, TaskError, TaskResult},
};

fn main() -> ExitCode {
    // An async task: `@app.task(name='word_count') def word_count(text): …`
    let word_count = Task::new("word_count", &["text"], |(text,): (String,)| async move {
        TaskResult::Ok(text.split_whitespace().count())
    });
    // A CPU-bound task: on the blocking pool, so it never stalls the others.
    let fib = Task::blocking("fib", &["n"], |(n,): (u32,)| {
        if n > 92 {
            let message = format!("fib({n}) does not fit in 64 bits");
            return Err(TaskError::fail("ValueError", "builtins", message));
        }
        let (mut a, mut b) = (0u64, 1u64);
        for _ in 0..n {
            (a, b) = (b, a.saturating_add(b));
        }
        Ok(a)
    });
    let tasks = Registry::new().register(word_count).register(fib);
    App::new("your_own_task")
        .setting("broker_url", "redis://127.0.0.1:6379/7") // the blog's broker
        .tasks(tasks)
        .main()
}

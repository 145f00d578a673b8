//! Celery 5.7's integration-suite tasks (`t/integration/tasks.py` in the
//! celery sdist), ported to Rust under their Celery names: the proof that
//! the task API ports real Celery tasks, and what `bench/celery_suite.sh`
//! routes to our worker while Celery's own `test_canvas.py` runs.
//!
//! | module | job |
//! |---|---|
//! | [`tasks`] | the tasks, each under its Python source |
//! | [`python`] | Python's `+`, `*`, `sum()` and truth on JSON values |

pub mod python;
pub mod tasks;

use redis::aio::ConnectionManager;

/// The suite's `get_redis_connection()`: `REDIS_HOST` and `REDIS_PORT`
/// (default `localhost:6379`), database 0.
pub async fn redis_connection() -> redis::RedisResult<ConnectionManager> {
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "localhost".to_owned());
    let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".to_owned());
    redis::Client::open(format!("redis://{host}:{port}/0"))?
        .get_connection_manager()
        .await
}

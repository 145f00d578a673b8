//! Celery, in Rust: its wire protocol (protocol 2, JSON), the Redis and AMQP
//! transports, a worker, the Redis result backend and beat — as a library a
//! Python Celery shop can put beside its Python workers.
//!
//! The bytes on the wire are Celery's, captured from a real Celery 5.7
//! (`../shared/celery-protocol.md`), so the pieces mix freely: a Python app's
//! `delay()` runs on a Rust worker, a Rust producer's task runs on a Python
//! worker, and either reads the other's results.
//!
//! An application registers its own tasks and runs the worker:
//!
//! ```no_run
//! use celery_core::{registry::Registry, task::{Task, TaskResult}, worker};
//!
//! # async fn example(config: worker::WorkerConfig) -> Result<(), worker::WorkerError> {
//! let registry = Registry::new().register(Task::new(
//!     "add",
//!     &["x", "y"],
//!     |(x, y): (i64, i64)| async move { TaskResult::Ok(x + y) },
//! ));
//! worker::run(config, registry, worker::ShutdownSignals::default()).await?;
//! # Ok(()) }
//! ```
//!
//! `celery-cli` turns such a registry into Celery's whole command line
//! (`worker`, `beat`, `send`, `inspect`, …); `celery-sms-demo` is such an
//! application: the blog's SMS task on top.
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | [`protocol`] | the message format: headers, body, kombu's Redis envelope, AMQP headers |
//! | [`task`] | one task: name, parameters, typed body, retry or failure |
//! | [`registry`] | the tasks a worker runs, by name |
//! | [`broker`] | Redis and AMQP transports: sending, fetching, acking, restoring |
//! | [`worker`] | the consume loop, concurrency, warm/cold shutdown, the banner |
//! | [`canvas`] | `link`, `link_error`, chain, group, chord: what a finished task sets off |
//! | [`backend`] | the Redis result backend (`celery-task-meta-<id>`), and the chord counter |
//! | [`control`] | remote control (`celery inspect`/`control`) and events (Flower) |
//! | [`beat`] | Celery Beat: the schedule file, cron, due slots, the leader lease |
//! | [`config`] | Celery's settings by their names: the environment, a TOML file, the app's defaults |
//! | [`redis_connection`] | the one way every part opens Redis: checked URL, bounded connect, one watch |
//!
//! # Features
//!
//! `beat` (on by default): Celery Beat, and with it chrono-tz's time-zone
//! tables. Both brokers and remote control are always built: Redis is also
//! the result backend, the AMQP client comes with `amqp-connect` (whose
//! URL and redaction types every part uses), and the worker's revoke list
//! and `inspect` state are remote control's.
//!
//! # Python Celery name → our name
//!
//! | Celery / kombu | here |
//! |---|---|
//! | `@app.task(name='add')` | [`task::Task::new`] (`bind=True`: [`task::Task::bound`]) |
//! | `app.tasks`, `autodiscover_tasks` | [`registry::Registry`] |
//! | `self.retry(countdown=…)` | [`task::TaskError::Retry`] → [`protocol::TaskMessage::retry`] |
//! | `raise ValueError(…)` | [`task::TaskError::Fail`] |
//! | `max_retries` | [`task::Task::max_retries`] |
//! | `task.delay(*args)` / `apply_async` | [`protocol::TaskMessage::new`] + [`broker::Producer`] |
//! | `AsyncResult(id).get()` | [`backend::ResultBackend`] |
//! | `celery worker -c N -Q q` | [`worker::run`] with [`worker::WorkerConfig`] |
//! | `app.conf`, `config_from_object`, Django's `CELERY_` settings | [`config::Settings::load`] from [`config::Sources`] |
//! | `worker_prefetch_multiplier` | [`worker::WorkerConfig::prefetch_multiplier`] |
//! | `task_acks_late=True` | always: ack after the task (`worker/execute.rs`) |
//! | kombu `QoS` (`unacked`, `unacked_index`, `restore_visible`) | [`broker::redis::RedisConsumer`] |
//! | `visibility_timeout` | [`worker::WorkerConfig::visibility_timeout`] |
//! | kombu `Message.ack/reject/requeue` | [`broker::Settlement`] |
//! | warm / cold shutdown | [`worker::ShutdownSignals`] |
//! | `celery beat`, `beat_schedule` | [`beat::run`], a TOML schedule file |
//! | `add.s(2, 2)`, `.si(…)` | [`canvas::Signature`] |
//! | `chain(…)`, `group(…)`, `chord(…)`, `link=`, `link_error=` | [`canvas::Signature::chain`], [`canvas::Signature::group`], [`canvas::Signature::chord`] (or [`canvas::expression::parse`]), then [`canvas::freeze`] and [`canvas::apply()`]; the worker runs them (`worker/canvas.rs`) |
//! | `sig.apply_async()` inside a task | [`task::Request::send`] |
//! | `self.update_state(state=…, meta=…)` | [`task::Request::update_state`] |
//! | `self.replace(sig)` | [`task::TaskError::replace`], worked out by [`canvas::replace()`] |
//! | `task_default_queue` | [`worker::WorkerConfig::default_queue`] |
//! | pidbox, `app.control.inspect()`, `app.control.revoke()` | [`control::client::broadcast`]; the worker answers in [`control::server`] |
//! | `worker_state.revoked` | [`control::revoked::RevokedSet`] |
//! | `-E`, `EventDispatcher` | [`worker::WorkerConfig::task_events`], [`control::Events`] |

pub mod backend;
#[cfg(feature = "beat")]
pub mod beat;
pub mod broker;
pub mod canvas;
pub mod config;
pub mod control;
pub mod logs;
pub mod protocol;
pub mod redis_connection;
pub mod registry;
pub mod task;
pub mod worker;

pub use registry::Registry;
pub use task::{Request, Retry, Task, TaskError, TaskOptions, TaskResult, TaskResultExt};

/// What an application names most: `use celery_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        backend::ExceptionInfo,
        canvas::Signature,
        config::{Settings, Sources},
        registry::Registry,
        task::{Request, Retry, Task, TaskError, TaskOptions, TaskResult, TaskResultExt},
        worker::{ShutdownSignals, WorkerConfig},
    };
}

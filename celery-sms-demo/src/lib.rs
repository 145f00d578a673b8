//! The blog's Celery SMS task in Rust: a worker and a producer that speak
//! Celery's own wire protocol (protocol 2, JSON), over Redis and RabbitMQ.
//!
//! ```python
//! celery_app = Celery('xxx')                            # main.py
//! celery_app.config_from_object('celery_tasks.config')  # broker_url = 'redis://127.0.0.1/7'
//!
//! @celery_app.task(name='SMS')                          # tasks.py
//! def send_sms_code(mobile, sms_code):
//!     CCP().send_template_sms(mobile, [sms_code, 5], 1)
//! ```
//!
//! Because the bytes on the wire are Celery's, the pieces mix freely: the
//! blog's Django code can `send_sms_code.delay(…)` and this worker runs it; our
//! `send` enqueues a task a Python worker runs; either side reads the other's
//! results. The binary (`src/main.rs`, `src/cli.rs`) mirrors the `celery`
//! command: `worker`, `send` (≈ `delay()`), `result` (≈ `AsyncResult`).
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | [`protocol`] | the message format: headers, body, kombu's Redis envelope, AMQP headers |
//! | [`broker`] | Redis and AMQP transports: sending, fetching, acking, restoring |
//! | [`worker`] | the consume loop, concurrency, warm/cold shutdown, the banner |
//! | [`tasks`] | the registered tasks (`SMS`, `noop`), argument binding, retries |
//! | [`sms`] | SMS gateways: `console` and 容联云 (Ronglian) |
//! | [`backend`] | the Redis result backend (`celery-task-meta-<id>`) |
//! | [`redis_connection`] | the one way every part opens Redis: checked URL, bounded connect, one watch |
//! | [`beat`] | Celery Beat: the schedule file, cron, due slots, the leader lease |
//!
//! # Python Celery name → our name
//!
//! | Celery / kombu | here |
//! |---|---|
//! | `broker_url` | `--broker` / `CELERY_BROKER_URL` |
//! | `result_backend` | `--result-backend` / `CELERY_RESULT_BACKEND` |
//! | `@app.task(name='SMS')` | [`tasks::Registry`] (`"SMS"` → `send_sms_code`) |
//! | `task.delay(*args)` / `apply_async` | `send` subcommand, [`protocol::TaskMessage::new`] + [`broker::Producer`] |
//! | `self.retry(countdown=…)` | [`tasks::TaskOutcome::Retry`] → [`protocol::TaskMessage::retry`] |
//! | `AsyncResult(id).get()` | `result` subcommand, [`backend::ResultBackend`] |
//! | `celery worker -c N -Q q` | `worker -c N -Q q`, [`worker::run`] |
//! | `worker_prefetch_multiplier` | `--prefetch-multiplier` |
//! | `task_acks_late=True` | always: ack after the task ([`worker::execute`]) |
//! | kombu `QoS` (`unacked`, `unacked_index`, `restore_visible`) | [`broker::redis::RedisConsumer`] |
//! | `visibility_timeout` | `--visibility-timeout` |
//! | kombu `Message.ack/reject/requeue` | [`broker::Settlement`] |
//! | warm / cold shutdown | [`worker::ShutdownSignals`] |
//! | `celery beat`, `worker -B`, `beat_schedule` | `beat` subcommand, `worker -B`, [`beat::run`], `beat-schedule.toml` |

pub mod backend;
pub mod beat;
pub mod broker;
pub mod protocol;
pub mod redis_connection;
pub mod sms;
pub mod tasks;
pub mod worker;

//! The blog's Celery app in Rust: its `SMS` task, the SMS gateways it calls,
//! and the `celery`-like command that runs it — on top of [`celery_core`],
//! which speaks Celery's own wire protocol over Redis and RabbitMQ.
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
//! command: `worker`, `send` (≈ `delay()`), `result` (≈ `AsyncResult`), `beat`.
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | [`sms_task`] | the blog's `SMS` task: validation, retries, "already sent" records |
//! | [`first_steps`] | Celery's first-steps tasks `add`, `mul`, `xsum`, and `noop` |
//! | [`sms`] | SMS gateways: `console` and 容联云 (Ronglian) |
//! | [`app`] | the app's registry: every task above, and what they need |

pub mod app;
pub mod first_steps;
pub mod sms;
pub mod sms_task;

//! Remote control and events: what lets Celery's own tools — `celery
//! inspect`, `celery control`, `celery status`, Flower — see and steer our
//! worker as they see a Python one.
//!
//! Two flows share one broker connection, the *mailbox*:
//!
//! * **remote control** (kombu's pidbox): clients broadcast a [`Request`],
//!   every worker it is meant for runs the command and replies to the
//!   client's reply queue (`inspect ping`, `stats`, `active`, `revoke` …);
//! * **events**: the worker publishes `worker-online`, a `worker-heartbeat`
//!   every two seconds and `worker-offline`, and — with `-E` or after an
//!   `enable_events` command — one event per step of each task.
//!
//! The wire facts were captured from Celery 5.7 and Flower 2.2
//! (`../shared/celery-canvas-control-events.md` §2–§4).
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | [`request`] | a request's format, and which nodes it is for (pure) |
//! | [`commands`] | each command's reply, from the worker's state (pure) |
//! | [`state`] | what the worker is doing: tasks by phase, totals, revoked ids |
//! | [`revoked`] | the bounded, expiring set of revoked ids (pure) |
//! | [`clock`] | the Lamport clock events are ordered by (pure) |
//! | [`events`] | each event's fields, formatted as Celery's (pure) |
//! | [`mailbox`] | the connection, as one handle for both brokers |
//! | [`server`] | the worker's loop: answer, heartbeat, publish events |
//! | [`client`] | the asking side: broadcast, collect replies |
//! | `rusage.rs` | `getrusage()` and the load average |
//!
//! Each transport's connection for it is [`transport::MailboxTransport`]
//! (`transport/redis.rs`, `transport/amqp.rs`): remote control uses the
//! brokers, and the brokers know nothing of remote control.

pub mod client;
pub mod clock;
pub mod commands;
pub mod events;
pub mod mailbox;
pub mod request;
pub mod revoked;
mod rusage;
pub mod server;
pub mod state;
pub mod transport;

pub use request::Request;
pub use server::{Control, ControlConfig, Events, start};

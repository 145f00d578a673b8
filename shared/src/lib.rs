//! Pieces every binary in this workspace shares: how to reach RabbitMQ, how to
//! log, how to stop, and how to show a broker URL without leaking its password.
//!
//! The blog's pika scripts open their connection with four lines of
//! boilerplate each. Here that boilerplate lives once, and grows the things a
//! production client needs: a named connection, automatic recovery, a bounded
//! retry while the broker is still starting, and errors that say what to do.
//!
//! # Layout
//!
//! | module        | concept                                                        |
//! |---------------|----------------------------------------------------------------|
//! | [`settings`]  | command-line / environment settings shared by every binary     |
//! | [`amqp`]      | connecting to RabbitMQ and declaring queues, with clear errors |
//! | [`nodes`]     | a cluster's `;`-separated URLs: failover, round-robin          |
//! | [`fail_stop`] | a socket that stays failed, so lapin's recovery always starts  |
//! | [`publisher`] | publisher confirms with a window; republish after recovery     |
//! | [`redact`]    | `amqp://guest:**@host` — URLs that are safe to print           |
//! | [`seconds`]   | `--timeout 30`: seconds parsed once into a checked `Duration`   |
//! | [`logging`]   | `-l info` logging to stderr, in Celery's log format            |
//! | [`shutdown`]  | Ctrl-C / SIGTERM as a future (warm, then cold shutdown)        |
//! | [`watch`]     | one warning when a connection is lost, one line when it is back |
//! | [`cli`]       | one-line errors and exit codes for the binaries                |

pub mod amqp;
pub mod cli;
pub mod fail_stop;
pub mod logging;
pub mod nodes;
pub mod publisher;
pub mod redact;
pub mod seconds;
pub mod settings;
pub mod shutdown;
pub mod watch;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use amqp::{AmqpError, QueueSpec, QueueType, connect_amqp, declare_queue};
pub use publisher::{ConfirmedPublisher, Outgoing};
pub use redact::{Redacted, SecretUrl};
pub use seconds::Seconds;
pub use settings::{AmqpSettings, LogLevel};
pub use shutdown::Shutdown;
pub use watch::ConnectionWatch;

//! What the workspace's programs share around [`amqp_connect`]: their flags
//! (the connection's, with its `clap` feature, and `-l`), Celery's log
//! format, how they stop on signals, and how they end — one line on stderr
//! and an exit code. Libraries (`celery-core`, `amqp-connect`) depend on none
//! of it.
//!
//! The connection layer's modules are re-exported under their old names
//! (`shared::amqp`, `shared::AmqpSettings`, …), so a program reads as one
//! toolkit.
//!
//! # Layout
//!
//! | module        | concept                                                        |
//! |---------------|----------------------------------------------------------------|
//! | [`settings`]  | command-line / environment settings shared by every binary     |
//! | [`logging`]   | `-l info` logging to stderr, in Celery's log format            |
//! | [`shutdown`]  | Ctrl-C / SIGTERM as a future (warm, then cold shutdown)        |
//! | [`cli`]       | one-line errors and exit codes for the binaries                |
//! | `testing`     | test helpers for the other crates (feature `test-support`)    |

pub mod cli;
pub mod logging;
pub mod settings;
pub mod shutdown;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use amqp_connect::{
    AmqpError, AmqpSettings, ConfirmedPublisher, ConnectionWatch, Outgoing, QueueSpec, QueueType,
    Redacted, Seconds, SecretUrl, amqp, connect_amqp, declare_queue, fail_stop, nodes, publisher,
    redact, seconds, watch,
};
pub use settings::LogLevel;
pub use shutdown::Shutdown;

//! Reaching RabbitMQ reliably, on lapin: a checked URL, a bounded first
//! connect, failover between a cluster's nodes, a socket that stays failed
//! so lapin's recovery always starts, publisher confirms with a window, and
//! URLs that never show their password.
//!
//! The blog's pika scripts open their connection with four lines of
//! boilerplate each. Here that boilerplate lives once, and grows the things
//! a production client needs: a named connection, automatic recovery, a
//! bounded retry while the broker is still starting, and errors that say
//! what to do. The workspace's programs and `celery-core` connect through it.
//!
//! ```no_run
//! use amqp_connect::{AmqpSettings, connect_amqp};
//!
//! # async fn example() -> Result<(), amqp_connect::AmqpError> {
//! let settings = AmqpSettings::new("amqp://guest:guest@127.0.0.1:5672/%2f");
//! let connection = connect_amqp(&settings, "my-program").await?;
//! # Ok(()) }
//! ```
//!
//! The `clap` feature makes [`AmqpSettings`] a `clap` argument group,
//! [`QueueType`] a value enum and [`Seconds`] a value parser, for programs
//! that take them as flags.
//!
//! # Layout
//!
//! | module        | concept                                                        |
//! |---------------|----------------------------------------------------------------|
//! | [`settings`]  | where RabbitMQ is, how long to wait, the connection's name     |
//! | [`amqp`]      | connecting to RabbitMQ and declaring queues                    |
//! | [`error`]     | what goes wrong, phrased for the user; reading lapin's errors  |
//! | [`url`]       | an AMQP URL, checked once without touching the network         |
//! | [`nodes`]     | a cluster's `;`-separated URLs: failover, round-robin          |
//! | [`fail_stop`] | a socket that stays failed, so lapin's recovery always starts  |
//! | [`publisher`] | publisher confirms with a window; republish after recovery     |
//! | [`redact`]    | `amqp://guest:**@host` — URLs that are safe to print           |
//! | [`report`]    | an error and its causes as one line                            |
//! | [`seconds`]   | `--timeout 30`: seconds parsed once into a checked `Duration`   |
//! | [`watch`]     | one warning when a connection is lost, one line when it is back |

pub mod amqp;
pub mod error;
pub mod fail_stop;
pub mod nodes;
pub mod publisher;
pub mod redact;
pub mod report;
pub mod seconds;
pub mod settings;
pub mod url;
pub mod watch;

pub use amqp::{AmqpError, QueueSpec, QueueType, connect_amqp, declare_queue};
pub use publisher::{ConfirmedPublisher, Outgoing};
pub use redact::{Redacted, SecretUrl};
pub use seconds::Seconds;
pub use settings::AmqpSettings;
pub use watch::ConnectionWatch;

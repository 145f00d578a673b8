//! How to reach RabbitMQ: the URL (or a cluster's list), how long to wait
//! for it, and what to call the connection.
//!
//! With the `clap` feature, [`AmqpSettings`] is also a `clap` argument group
//! (`--amqp-url`, `AMQP_URL`, …) that a program flattens into its command
//! line. The defaults are pika's `ConnectionParameters('localhost', 5672, '/',
//! PlainCredentials('guest', 'guest'))`: the URL
//! `amqp://guest:guest@127.0.0.1:5672/%2f` (`%2f` is the vhost `/`).

use std::time::Duration;

use crate::redact::SecretUrl;
#[cfg(feature = "clap")]
use crate::seconds::Seconds;

/// The blog's broker: localhost, port 5672, vhost `/`, user guest/guest.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where RabbitMQ is and how patiently to wait for it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[non_exhaustive]
pub struct AmqpSettings {
    /// RabbitMQ URL: amqp://USER:PASSWORD@HOST:PORT/VHOST (amqps:// for TLS);
    /// a cluster's nodes as a ';'-separated list, tried in turn
    /// [default: amqp://guest:**@127.0.0.1:5672/%2f]
    #[allow(rustdoc::broken_intra_doc_links)]
    // clap shows this text as the help: not a link
    // The default is written out by hand, with its password hidden: clap
    // would print it whole. (`--help` output is tested for passwords.)
    #[cfg_attr(feature = "clap", arg(long = "amqp-url", env = "AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_default_value = true, hide_env_values = true))]
    pub url: SecretUrl,

    /// Seconds to keep retrying the first connection while the broker starts.
    #[cfg_attr(feature = "clap", arg(long, env = "AMQP_CONNECT_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = Seconds::CONNECT_TIMEOUT))]
    pub connect_timeout: Duration,

    /// Name shown for this connection in the RabbitMQ management UI.
    #[cfg_attr(feature = "clap", arg(long, env = "AMQP_CONNECTION_NAME"))]
    pub connection_name: Option<String>,

    /// How a user sets the URL, for error messages ("point … at a running broker").
    #[cfg_attr(feature = "clap", arg(skip = DEFAULT_URL_SETTING))]
    pub url_setting: &'static str,

    /// The type of the queues a Celery program declares (Celery's
    /// `task_default_queue_type`). The blog's producer and consumer name
    /// their one queue's type in its `QueueSpec` instead.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub queue_type: QueueType,

    /// When a Celery program's broker is Redis behind Sentinel
    /// (`sentinel://…`): the master's name (kombu's `master_name`
    /// transport option). These settings are the bundle every connection
    /// is opened with, so the Redis side's one extra setting rides along.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub sentinel_master: Option<String>,
}

/// `--connect-timeout`'s default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The flag and variable that set [`AmqpSettings::url`] in this crate's CLIs.
pub const DEFAULT_URL_SETTING: &str = "--amqp-url / AMQP_URL";

impl AmqpSettings {
    /// Settings for `url` with the defaults for everything else (tests, examples).
    pub fn new(url: impl Into<SecretUrl>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            connection_name: None,
            url_setting: DEFAULT_URL_SETTING,
            queue_type: QueueType::Classic,
            sentinel_master: None,
        }
    }

    /// The connection name, or `<program>@<host> pid <pid>` so that an
    /// operator looking at `rabbitmqctl list_connections` can tell who is who.
    pub fn connection_name_or(&self, program: &str) -> String {
        self.connection_name.clone().unwrap_or_else(|| {
            let host = hostname();
            format!("{program}@{host} pid {}", std::process::id())
        })
    }
}

/// This machine's host name (`celery@<host>`, connection names, `origin`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A queue name as a value parser: not empty (RabbitMQ would make up a
/// name for "") and at most 255 bytes (AMQP's limit for names; lapin would
/// fail on a longer one only when sending it).
pub fn queue_name(text: &str) -> Result<String, String> {
    match text.len() {
        0 => Err("a queue name must not be empty".to_owned()),
        1..=255 => Ok(text.to_owned()),
        n => Err(format!(
            "a queue name is at most 255 bytes, this one is {n}"
        )),
    }
}

/// RabbitMQ's queue types, as `--queue-type` (Celery's
/// `task_default_queue_type` uses the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum QueueType {
    /// A single-node queue: what `queue_declare` makes unless told otherwise.
    #[default]
    Classic,
    /// Raft-replicated across a cluster's nodes; always durable. Supports
    /// only a per-consumer prefetch (a channel-wide one is refused).
    Quorum,
}

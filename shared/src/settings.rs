//! Settings every binary shares, as `clap` argument groups.
//!
//! Defaults are the blog's values: pika's `ConnectionParameters('localhost',
//! 5672, '/', PlainCredentials('guest', 'guest'))` is the URL
//! `amqp://guest:guest@127.0.0.1:5672/%2f` (`%2f` is the vhost `/`).
//! Each setting can also come from the environment, so the same binary runs
//! against a docker-compose broker, a CI broker or a cloud one unchanged.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// The blog's broker: localhost, port 5672, vhost `/`, user guest/guest.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where RabbitMQ is and how patiently to wait for it.
#[derive(Args, Clone, Debug)]
pub struct AmqpSettings {
    /// RabbitMQ URL: amqp://USER:PASSWORD@HOST:PORT/VHOST (amqps:// for TLS).
    #[arg(long = "amqp-url", env = "AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    pub url: String,

    /// Seconds to keep retrying the first connection while the broker starts.
    #[arg(long, env = "AMQP_CONNECT_TIMEOUT", default_value_t = 30.0, value_parser = parse_seconds)]
    pub connect_timeout: f64,

    /// Name shown for this connection in the RabbitMQ management UI.
    #[arg(long, env = "AMQP_CONNECTION_NAME")]
    pub connection_name: Option<String>,

    /// How a user sets the URL, for error messages ("point … at a running broker").
    #[arg(skip = DEFAULT_URL_SETTING)]
    pub url_setting: &'static str,
}

/// The flag and variable that set [`AmqpSettings::url`] in this crate's CLIs.
pub const DEFAULT_URL_SETTING: &str = "--amqp-url / AMQP_URL";

impl AmqpSettings {
    /// Settings for `url` with the defaults for everything else (tests, examples).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: 30.0,
            connection_name: None,
            url_setting: DEFAULT_URL_SETTING,
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout)
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

/// Parses a non-negative number of seconds (`0.5`, `30`).
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds (e.g. 30 or 0.5)"
        )),
    }
}

/// Celery's `-l/--loglevel` names; `-l info` is what the blog types.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[value(rename_all = "lower")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    #[value(alias = "warn")]
    Warning,
    #[value(alias = "critical", alias = "fatal")]
    Error,
}

/// `-l/--loglevel`, shared by every binary.
#[derive(Args, Clone, Copy, Debug)]
pub struct LogSettings {
    /// Logging level, as in Celery: debug, info, warning or error.
    #[arg(short = 'l', long = "loglevel", env = "LOG_LEVEL", value_enum, ignore_case = true, default_value_t = LogLevel::Info, global = true)]
    pub level: LogLevel,
}

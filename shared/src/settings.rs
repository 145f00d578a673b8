//! Settings every binary shares, as `clap` argument groups: the RabbitMQ
//! connection (from `amqp-connect`, with its `clap` feature) and `-l`.
//!
//! Each setting can also come from the environment, so the same binary runs
//! against a docker-compose broker, a CI broker or a cloud one unchanged.

use clap::{Args, ValueEnum};

pub use amqp_connect::settings::*;

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

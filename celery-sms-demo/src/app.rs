//! The app's task registry: what `celery_tasks.main` registers, in Rust.
//!
//! ```python
//! celery_app.autodiscover_tasks(['celery_tasks.sms', 'celery_tasks.demo', …])
//! ```
//!
//! [`registry`] builds the SMS task with its gateway (from `SMS_GATEWAY`)
//! and its Redis for "already sent" records, then adds the first-steps tasks
//! and `noop`. The worker gets the result: it knows nothing about SMS.
//! [`SmsFlags`] are the app's own `worker` flags, beside Celery's.

use std::time::Duration;

use celery_cli::Setup;
use celery_core::{
    broker::Transport,
    redis_connection::{RedisConnectError, RedisConnection, RedisOptions, Role},
    registry::Registry,
};
use shared::{Seconds, SecretUrl};
use thiserror::Error;
use tracing::{info, warn};

use crate::{
    first_steps,
    sms::{Gateway, GatewayConfigError},
    sms_task::SmsTask,
};

/// The SMS task's "already sent" Redis, as errors and log lines name it.
const SENT_RECORDS: Role = Role {
    name: "the SMS sent-records Redis",
    setting: "--sent-records-url / SMS_SENT_RECORDS_URL",
};

/// `--retry-backoff`: the SMS task's backoff is capped at an hour anyway.
const RETRY_BACKOFF: Seconds = Seconds::between(0.0, 3600.0);

/// The SMS task's own `worker` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SmsFlags {
    /// First retry delay of the SMS task in seconds (doubles each retry, with jitter).
    #[arg(long, env = "SMS_RETRY_BACKOFF", value_name = "SECONDS", default_value = "2", value_parser = RETRY_BACKOFF)]
    pub retry_backoff: Duration,

    /// Redis URL for the "SMS already sent" records (default: the broker if Redis, else the result backend).
    #[arg(long, env = "SMS_SENT_RECORDS_URL", hide_env_values = true)]
    pub sent_records_url: Option<SecretUrl>,
}

/// Where the SMS task's "already sent" records live, and how to reach them.
#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// `--sent-records-url`; `None`: the broker if it is Redis, else the
    /// result backend if it is, else no records.
    pub sent_records_url: Option<SecretUrl>,
    pub broker_url: SecretUrl,
    pub result_backend: Option<SecretUrl>,
    /// How to open it (the start-up bound, a Sentinel master's name).
    pub redis: RedisOptions,
    /// The first retry's delay (`--retry-backoff`).
    pub retry_backoff: Duration,
}

#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0}")]
    Gateway(#[from] GatewayConfigError),
    #[error(transparent)]
    SentRecords(#[from] RedisConnectError),
}

impl From<Setup<SmsFlags>> for SmsSettings {
    fn from(setup: Setup<SmsFlags>) -> Self {
        SmsSettings {
            sent_records_url: setup.flags.sent_records_url,
            broker_url: setup.broker_url,
            result_backend: setup.result_backend,
            redis: setup.redis,
            retry_backoff: setup.flags.retry_backoff,
        }
    }
}

/// The worker's tasks, from its flags: what `celery_cli::App::tasks_from` calls.
pub async fn tasks(setup: Setup<SmsFlags>) -> anyhow::Result<Registry> {
    Ok(registry(&setup.into()).await?)
}

/// Every task of the app: `SMS`, `add`, `mul`, `xsum`, `noop`.
pub async fn registry(settings: &SmsSettings) -> Result<Registry, AppError> {
    let gateway = Gateway::from_env()?;
    info!(gateway = gateway.name(), "SMS gateway");
    let sms = SmsTask::new(
        gateway,
        sent_records(settings).await?,
        settings.retry_backoff,
    );
    Ok(Registry::new()
        .register(sms.task())
        .register(first_steps::add())
        .register(first_steps::mul())
        .register(first_steps::xsum())
        .register(first_steps::noop()))
}

/// The Redis for the SMS task's "already sent" records.
///
/// A URL that is given but unusable stops the worker: running on without
/// the guard would quietly send a second SMS for every redelivered task. An
/// error names the setting the URL came from. With no Redis anywhere there
/// is no guard, and the log says so.
async fn sent_records(settings: &SmsSettings) -> Result<Option<RedisConnection>, AppError> {
    let is_redis = |url: &&SecretUrl| matches!(Transport::of(url), Ok(Transport::Redis));
    let records = SENT_RECORDS.name;
    let (url, role) = if let Some(url) = &settings.sent_records_url {
        (url, SENT_RECORDS)
    } else if let Some(url) = Some(&settings.broker_url).filter(is_redis) {
        let role = Role {
            name: records,
            ..Role::BROKER
        };
        (url, role)
    } else if let Some(url) = settings.result_backend.as_ref().filter(is_redis) {
        let role = Role {
            name: records,
            ..Role::RESULT_BACKEND
        };
        (url, role)
    } else {
        warn!(
            "No Redis for the SMS task's \"already sent\" records (set --sent-records-url): a task redelivered after a crash may send its SMS twice"
        );
        return Ok(None);
    };
    let connection = RedisConnection::open(url, role, &settings.redis).await?;
    Ok(Some(connection))
}

//! The worker: `celery -A celery_tasks.main worker -l info`, in Rust.
//!
//! [`run`] connects to the broker (and the result backend, if any), prints
//! Celery's banner, then loops: take a delivery, spawn its processing
//! ([`execute::process`]), repeat. Three limits keep it honest:
//!
//! * **prefetch** (`concurrency × prefetch_multiplier`, Celery's default 4):
//!   messages taken from the broker but not yet acked, at most;
//! * **concurrency** (`-c`, default the number of CPUs): tasks running at
//!   once. Tasks are async, so one thread runs many; a slow SMS gateway call
//!   waits without blocking anything else;
//! * **shutdown**: the first signal is a *warm* shutdown — stop fetching,
//!   hand back what never started, let running tasks finish, ack, exit 0; a
//!   second signal is a *cold* one — stop now and put every unacked message
//!   back on the queue (Redis: restore; AMQP: close the channel).

pub mod banner;
pub mod execute;

use std::{io::Write, sync::Arc, time::Duration};

use thiserror::Error;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    backend::{BackendError, ResultBackend},
    broker::{BrokerError, Consumer, ConsumerConfig, Producer, Transport},
    redis_connection::{RedisConnectError, RedisConnection, Role},
    sms::Gateway,
    tasks::Registry,
};
use execute::{Processed, WorkerContext, process};
use shared::{AmqpSettings, Redacted};

/// Everything the worker needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub broker_url: String,
    pub result_backend: Option<String>,
    pub concurrency: usize,
    pub queues: Vec<String>,
    pub prefetch_multiplier: usize,
    pub visibility_timeout: Duration,
    /// `celery@<host>`, as in the banner and logs.
    pub hostname: String,
    /// Connection settings for an AMQP broker (its URL is `broker_url`).
    pub amqp: AmqpSettings,
    /// Where the SMS task records what it sent; `None`: the broker if it is
    /// Redis, else the result backend, else no record.
    pub sent_records_url: Option<String>,
    pub retry_backoff: Duration,
    /// Print the banner on stdout.
    pub banner: bool,
}

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Gateway(#[from] crate::sms::GatewayConfigError),
    #[error(transparent)]
    SentRecords(#[from] RedisConnectError),
}

/// The two stages of stopping, fired by the first and second signal.
#[derive(Debug, Clone, Default)]
pub struct ShutdownSignals {
    pub warm: CancellationToken,
    pub cold: CancellationToken,
}

/// What a finished worker did.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReport {
    pub processed: u64,
}

/// Runs the worker until `signals.warm` fires (and then shuts down warm, or
/// cold if `signals.cold` fires meanwhile).
pub async fn run(
    config: WorkerConfig,
    signals: ShutdownSignals,
) -> Result<WorkerReport, WorkerError> {
    let gateway = Gateway::from_env()?;
    let backend = match &config.result_backend {
        Some(url) => Some(ResultBackend::connect(url, config.amqp.connect_timeout).await?),
        None => None,
    };
    let prefetch = (config.concurrency * config.prefetch_multiplier).max(1);
    let mut consumer_amqp = config.amqp.clone();
    consumer_amqp.connection_name = Some(format!("{} consumer", config.hostname));
    let consumer_config = ConsumerConfig {
        url: config.broker_url.clone(),
        queues: config.queues.clone(),
        prefetch,
        visibility_timeout: config.visibility_timeout,
        amqp: consumer_amqp,
    };
    let mut amqp = config.amqp.clone();
    amqp.url = config.broker_url.clone();
    amqp.connection_name = Some(format!("{} producer", config.hostname));
    let producer = Producer::connect(&config.broker_url, amqp).await?;
    let (consumer, mut deliveries) = Consumer::start(&consumer_config).await?;
    // After the broker: if that is down, say so, not that the records are.
    let sent_records = sent_records(&config).await?;
    info!("Connected to {}", Redacted(&config.broker_url));

    if config.banner {
        // No stdout (a closed pipe) only costs the banner, not the worker.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            banner::banner(&banner::BannerInfo {
                hostname: &config.hostname,
                transport: Redacted(&config.broker_url).to_string(),
                results: backend
                    .as_ref()
                    .map_or_else(|| "disabled://".to_owned(), ResultBackend::shown_url),
                concurrency: config.concurrency,
                queues: &config.queues,
            })
        );
    }
    info!(gateway = gateway.name(), "{} ready.", config.hostname);

    let context = Arc::new(WorkerContext {
        consumer: consumer.clone(),
        registry: Registry::new(gateway, sent_records, config.retry_backoff),
        backend,
        producer: tokio::sync::Mutex::new(producer),
        concurrency: Arc::new(Semaphore::new(config.concurrency.max(1))),
        stop_waiting: CancellationToken::new(),
    });
    let mut in_flight = JoinSet::new();
    let mut report = WorkerReport::default();
    loop {
        tokio::select! {
            biased;
            () = signals.warm.cancelled() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => report.processed += 1,
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => { in_flight.spawn(process(context.clone(), delivery)); }
                None => break,
            },
        }
    }

    // Warm shutdown: stop fetching, return what never started, finish the rest.
    shared::logging::flush();
    let _ = writeln!(std::io::stderr(), "\nworker: Warm shutdown (MainProcess)");
    consumer.stop_fetching();
    context.stop_waiting.cancel();
    let mut unstarted = Vec::new();
    while let Ok(delivery) = deliveries.try_recv() {
        unstarted.push(delivery.token);
    }
    let finish = async {
        while let Some(done) = in_flight.join_next().await {
            match done {
                Ok(Processed::GiveBack(token)) => unstarted.push(token),
                Ok(Processed::Settled) => report.processed += 1,
                Err(_) => {}
            }
        }
    };
    tokio::select! {
        () = finish => {
            consumer.give_back(unstarted).await;
            consumer.close().await;
        }
        () = signals.cold.cancelled() => {
            shared::logging::flush();
            let _ = writeln!(std::io::stderr(), "worker: Cold shutdown (MainProcess)");
            in_flight.abort_all();
            consumer.abandon().await;
        }
    }
    if let Ok(producer) = Arc::try_unwrap(context).map(|context| context.producer.into_inner()) {
        producer.close().await;
    }
    Ok(report)
}

/// The Redis for the SMS task's "already sent" records: `--sent-records-url`,
/// else the broker if it is Redis, else the result backend if it is.
///
/// A URL that is given but unusable stops the worker: running on without
/// the guard would quietly send a second SMS for every redelivered task.
/// With no Redis anywhere there is no guard, and the log says so.
async fn sent_records(config: &WorkerConfig) -> Result<Option<RedisConnection>, WorkerError> {
    let is_redis = |url: &&String| matches!(Transport::of(url), Ok(Transport::Redis));
    let url = config
        .sent_records_url
        .as_ref()
        .or_else(|| Some(&config.broker_url).filter(is_redis))
        .or_else(|| config.result_backend.as_ref().filter(is_redis));
    let Some(url) = url else {
        tracing::warn!(
            "No Redis for the SMS task's \"already sent\" records (set --sent-records-url): a task redelivered after a crash may send its SMS twice"
        );
        return Ok(None);
    };
    let records =
        RedisConnection::open(url, Role::SENT_RECORDS, config.amqp.connect_timeout).await?;
    Ok(Some(records))
}

//! The worker: `celery -A celery_tasks.main worker -l info`, in Rust.
//!
//! [`run`] takes the application's [`Registry`], connects to the broker (and
//! the result backend, if any), opens its mailbox ([`crate::control`]: it
//! answers `celery inspect`/`control` and sends the events Flower shows),
//! prints Celery's banner, then loops: take a delivery, spawn its processing
//! (`execute::process`), repeat. Four limits keep it honest:
//!
//! * **prefetch** (`concurrency × prefetch_multiplier`, Celery's default 4):
//!   messages taken from the broker but not yet acked, at most;
//! * **concurrency** (`-c`): async tasks running at once. They share one
//!   thread, and one waiting on the network (an SMS gateway's 100 ms) blocks
//!   nothing else, so a slot costs a few hundred bytes, not a process;
//! * **the blocking pool**: tasks declared [`Task::blocking`](crate::task::Task::blocking)
//!   run on threads of their own, at most this many at once, so a body that
//!   blocks or burns CPU never stalls the event loop;
//! * **shutdown**: the first signal is a *warm* shutdown — stop fetching,
//!   hand back what never started, let running tasks finish, ack, exit 0; a
//!   second signal is a *cold* one — stop now and put every unacked message
//!   back on the queue (Redis: restore; AMQP: close the channel).

pub mod banner;
mod canvas;
mod context;
mod execute;
mod publisher;
mod services;

use std::{io::Write, sync::Arc, time::Duration};

use thiserror::Error;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    backend::{BackendError, ResultBackend},
    broker::{BrokerError, Consumer, ConsumerConfig, Transport, amqp::Amqp, redis::Redis},
    control::{self, ControlConfig, commands::WorkerInfo, transport::MailboxTransport},
    registry::Registry,
};
use amqp_connect::{AmqpSettings, Redacted, SecretUrl};
use context::WorkerContext;
use execute::{Processed, process};
use publisher::Publisher;

/// Async tasks at once, by default. Tasks mostly wait (on an HTTP gateway,
/// a database); a slot is cheap, and two slots — Celery's default of one per
/// CPU — would send two SMS at a time.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// Threads for blocking tasks, by default: one per CPU, as Celery's prefork
/// pool has one process per CPU.
pub fn default_blocking_pool() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Everything the worker needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub broker_url: SecretUrl,
    pub result_backend: Option<SecretUrl>,
    /// Async tasks running at once (`-c`).
    pub concurrency: usize,
    /// Blocking tasks running at once, each on a thread of its own.
    pub blocking_pool: usize,
    pub queues: Vec<String>,
    /// Where callbacks and chain steps go when they name no queue: Celery's
    /// `task_default_queue`, `celery` unless the application changed it.
    pub default_queue: String,
    pub prefetch_multiplier: usize,
    pub visibility_timeout: Duration,
    /// `celery@<host>`, as in the banner and logs.
    pub hostname: String,
    /// Connection settings for an AMQP broker (its URL is `broker_url`).
    pub amqp: AmqpSettings,
    /// The application's name in the banner (`.> app:`).
    pub app_name: String,
    /// Print the banner on stdout.
    pub banner: bool,
    /// Send task events from the start (`-E`); `enable_events` turns them
    /// on later. Worker events (online, heartbeat, offline) always go out.
    pub task_events: bool,
    /// Ask the running workers for their revoked ids at start (Celery's
    /// mingle; `--without-mingle` turns it off). Costs a second at start.
    pub mingle: bool,
}

impl WorkerConfig {
    /// Celery's defaults for everything but the broker: queue `celery`, no
    /// result backend, [`DEFAULT_CONCURRENCY`], prefetch multiplier 4, a
    /// one-hour visibility timeout, node `celery@<host>`.
    pub fn new(broker_url: impl Into<SecretUrl>) -> WorkerConfig {
        let broker_url = broker_url.into();
        WorkerConfig {
            amqp: AmqpSettings::new(broker_url.clone()),
            broker_url,
            result_backend: None,
            concurrency: DEFAULT_CONCURRENCY,
            blocking_pool: default_blocking_pool(),
            queues: vec!["celery".to_owned()],
            default_queue: "celery".to_owned(),
            prefetch_multiplier: 4,
            visibility_timeout: Duration::from_secs(3600),
            hostname: format!("celery@{}", amqp_connect::settings::hostname()),
            app_name: "celery-core".to_owned(),
            banner: false,
            task_events: false,
            mingle: true,
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("no tasks to run: register at least one task before starting the worker")]
    NoTasks,
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// The two stages of stopping, fired by the first and second signal.
#[derive(Debug, Clone, Default)]
pub struct ShutdownSignals {
    pub warm: CancellationToken,
    pub cold: CancellationToken,
}

impl ShutdownSignals {
    /// Celery's convention for signals: the first starts a warm shutdown,
    /// the second a cold one. Call this at each signal (`celery-cli` does,
    /// for Ctrl-C and SIGTERM).
    pub fn next_stage(&self) {
        match self.warm.is_cancelled() {
            false => self.warm.cancel(),
            true => self.cold.cancel(),
        }
    }
}

/// What a finished worker did.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReport {
    pub processed: u64,
}

/// Runs the worker with the tasks of `registry` until `signals.warm` fires
/// (and then shuts down warm, or cold if `signals.cold` fires meanwhile).
pub async fn run(
    config: WorkerConfig,
    registry: Registry,
    signals: ShutdownSignals,
) -> Result<WorkerReport, WorkerError> {
    registry.check()?;
    if registry.is_empty() {
        return Err(WorkerError::NoTasks);
    }
    // The one place the broker is chosen: everything below is generic.
    match Transport::of(&config.broker_url)? {
        Transport::Redis => run_on::<Redis>(config, registry, signals).await,
        Transport::Amqp => run_on::<Amqp>(config, registry, signals).await,
    }
}

async fn run_on<B: MailboxTransport>(
    config: WorkerConfig,
    registry: Registry,
    signals: ShutdownSignals,
) -> Result<WorkerReport, WorkerError> {
    let backend = match &config.result_backend {
        Some(url) => Some(ResultBackend::connect(url, &(&config.amqp).into()).await?),
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
    let producer = B::producer(&config.broker_url, amqp).await?;
    // Remote control first: mingle must learn the revoked ids before the
    // first task arrives.
    let mut mailbox_amqp = config.amqp.clone();
    mailbox_amqp.connection_name = Some(format!("{} mailbox", config.hostname));
    let control = control::start::<B>(
        &config.broker_url,
        mailbox_amqp,
        ControlConfig {
            hostname: config.hostname.clone(),
            task_events: config.task_events,
            mingle: config.mingle,
            info: WorkerInfo {
                pid: std::process::id(),
                concurrency: config.concurrency,
                blocking_pool: config.blocking_pool,
                prefetch_count: prefetch,
                queues: config.queues.clone(),
                broker: describe_broker(&config.broker_url),
                registered: registry.names().map(str::to_owned).collect(),
                conf: settings_table(&config),
            },
        },
        backend.clone(),
        signals.warm.clone(),
    )
    .await?;
    let (consumer, mut deliveries) = B::consumer(&consumer_config).await?;
    info!("Connected to {}", Redacted(&config.broker_url));

    if config.banner {
        // No stdout (a closed pipe) only costs the banner, not the worker.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            banner::banner(&banner::BannerInfo {
                hostname: &config.hostname,
                app: &config.app_name,
                transport: Redacted(&config.broker_url).to_string(),
                results: backend
                    .as_ref()
                    .map_or_else(|| "disabled://".to_owned(), ResultBackend::shown_url),
                concurrency: config.concurrency,
                blocking_pool: config.blocking_pool,
                queues: &config.queues,
                tasks: registry.names().collect(),
                task_events: config.task_events,
            })
        );
    }
    info!("{} ready.", config.hostname);

    let context = Arc::new(WorkerContext::<B> {
        consumer: consumer.clone(),
        registry,
        backend,
        publisher: Publisher::start(producer),
        concurrency: Arc::new(Semaphore::new(config.concurrency.max(1))),
        blocking_pool: Arc::new(Semaphore::new(config.blocking_pool.max(1))),
        stop_waiting: CancellationToken::new(),
        default_queue: config.default_queue.clone(),
        state: control.state().clone(),
        events: control.events().clone(),
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
    crate::logs::flush();
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
            crate::logs::flush();
            let _ = writeln!(std::io::stderr(), "worker: Cold shutdown (MainProcess)");
            in_flight.abort_all();
            consumer.abandon().await;
        }
    }
    if let Ok(context) = Arc::try_unwrap(context) {
        context.publisher.close().await;
    }
    control.stop().await;
    Ok(report)
}

/// The broker's connection facts for `inspect stats`, as kombu's
/// `Connection.info()` names them — never the password. Read with the
/// parsers that open the connections (redis's, and `amqp_connect::amqp`'s).
fn describe_broker(url: &str) -> serde_json::Value {
    use redis::IntoConnectionInfo;

    let (transport, host, port, user, virtual_host, ssl) = match Transport::of(url) {
        Ok(Transport::Redis) => match url.into_connection_info() {
            Ok(info) => {
                let (host, port, ssl) = match info.addr() {
                    redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
                    redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
                    other => (other.to_string(), 0, false),
                };
                let settings = info.redis_settings();
                let user = settings.username().map(str::to_owned);
                ("redis", host, port, user, settings.db().to_string(), ssl)
            }
            Err(_) => return serde_json::Value::Null,
        },
        Ok(Transport::Amqp) => match amqp_connect::amqp::parse_amqp_url(url) {
            Ok(uri) => {
                let ssl = matches!(uri.scheme, lapin::uri::AMQPScheme::AMQPS);
                let user = Some(uri.authority.userinfo.username).filter(|user| !user.is_empty());
                let (host, port) = (uri.authority.host, uri.authority.port);
                ("amqp", host, port, user, uri.vhost, ssl)
            }
            Err(_) => return serde_json::Value::Null,
        },
        Err(_) => return serde_json::Value::Null,
    };
    serde_json::json!({
        "hostname": host,
        "userid": user,
        "virtual_host": virtual_host,
        "port": port,
        "insist": false,
        "ssl": ssl,
        "transport": transport,
        "connect_timeout": 4,
        "transport_options": {},
        "login_method": null,
        "uri_prefix": null,
        "heartbeat": 120.0,
        "failover_strategy": "round-robin",
        "alternates": [],
    })
}

/// `inspect conf`: the settings this worker runs with, by Celery's names.
fn settings_table(config: &WorkerConfig) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(table) = serde_json::json!({
        "broker_url": Redacted(&config.broker_url).to_string(),
        "result_backend": config.result_backend.as_deref().map(|url| Redacted(url).to_string()),
        "worker_concurrency": config.concurrency,
        "worker_prefetch_multiplier": config.prefetch_multiplier,
        "task_default_queue": config.default_queue,
        "task_acks_late": true,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": config.task_events,
        "broker_transport_options": {"visibility_timeout": config.visibility_timeout.as_secs()},
    }) else {
        return serde_json::Map::new();
    };
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config is what gets logged when something goes wrong (`{config:?}`
    /// in a bug report, a `tracing` field): no password may survive it.
    #[test]
    fn a_config_logged_with_debug_shows_no_password() {
        let mut config = WorkerConfig::new("amqp://app:broker-s3cret@rabbit:5672/%2f");
        config.result_backend = Some(SecretUrl::from("redis://:backend-s3cret@redis:6379/8"));
        let logged = format!("{config:?} {config:#?}");
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(logged.contains("amqp://app:**@rabbit:5672/%2f"), "{logged}");
        assert!(logged.contains("redis://:**@redis:6379/8"), "{logged}");
    }
}

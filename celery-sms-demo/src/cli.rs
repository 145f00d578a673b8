//! The command line: Celery's option names, our defaults (the blog's).

mod canvas;
pub mod remote;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use celery_core::{
    backend::{ResultBackend, StoredResult, TaskState},
    beat::{self, BeatConfig},
    broker::{AnyProducer, Producer, Transport},
    protocol::{
        SendOptions, TaskMessage, pyrepr,
        time::{self, parse_celery_time},
    },
    redis_connection::RedisOptions,
    worker::{self, ShutdownSignals, WorkerConfig},
};
use celery_sms_demo::app::{self, SmsSettings};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use shared::{
    AmqpSettings, QueueType, Seconds, Shutdown,
    cli::print_line,
    seconds::{DAY, TEN_YEARS},
    settings::{LogSettings, queue_name},
};

/// The blog's broker: `broker_url = 'redis://127.0.0.1/7'`.
const DEFAULT_BROKER: &str = "redis://127.0.0.1:6379/7";

// The ranges of the flags given in seconds (see `shared::seconds`).
/// `--visibility-timeout`: kombu's default is an hour; a sweep every second
/// is the most a shared broker should take, and a month the longest wait.
const VISIBILITY_TIMEOUT: Seconds = Seconds::between(1.0, 30.0 * DAY);
/// `--retry-backoff`: the SMS task's backoff is capped at an hour anyway.
const RETRY_BACKOFF: Seconds = Seconds::between(0.0, 3600.0);
/// `--lease-ttl`: below half a second the renewals would be all beat does.
const LEASE_TTL: Seconds = Seconds::between(0.5, 3600.0);
/// `--countdown` and `--expires`: no further ahead than ten years.
const AHEAD: Seconds = Seconds::between(0.0, TEN_YEARS);
/// `send --timeout`: how long `--wait` may wait.
const WAIT_TIMEOUT: Seconds = Seconds::between(0.0, DAY);

/// The blog's Celery SMS task, as a Rust worker and producer that speak Celery's protocol.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    pub log: LogSettings,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run tasks from the queue (`celery worker`).
    Worker(WorkerArgs),
    /// Send the SMS task (`send_sms_code.delay(mobile, sms_code)`) and print its id.
    Send(SendArgs),
    /// Print a task's state and result (`AsyncResult(id)`).
    Result(ResultArgs),
    /// Send the schedule file's tasks when they are due (`celery beat`).
    Beat(BeatArgs),
    /// Ask the workers, ours or Python's (`celery inspect ping|stats|active|registered|…`).
    Inspect(remote::InspectArgs),
    /// Tell the workers (`celery control revoke ID [--terminate]`, `enable-events`, …).
    #[command(subcommand)]
    Control(remote::ControlCommand),
    /// List the workers that answer (`celery status`).
    Status(remote::StatusArgs),
}

#[derive(Args, Debug)]
struct BrokerArgs {
    /// Broker URL: redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT/VHOST; a RabbitMQ cluster as a ';'-separated list (failover, as in Celery); Redis Sentinel as sentinel://HOST:PORT;sentinel://…/DB with --sentinel-master.
    #[arg(long, env = "CELERY_BROKER_URL", default_value = DEFAULT_BROKER, hide_env_values = true)]
    broker: String,

    /// Result backend URL (redis://…, or sentinel://… with --sentinel-master); none by default, like the blog (results: disabled://).
    #[arg(long, env = "CELERY_RESULT_BACKEND", hide_env_values = true)]
    result_backend: Option<String>,

    /// Seconds to keep retrying the first connection while the broker (or the result backend) starts.
    #[arg(long, env = "CELERY_CONNECT_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = Seconds::CONNECT_TIMEOUT)]
    connect_timeout: Duration,

    /// RabbitMQ: the type of the queues declared (Celery's task_default_queue_type): classic, or quorum for a cluster.
    #[arg(long, env = "CELERY_TASK_DEFAULT_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    queue_type: QueueType,

    /// Redis Sentinel: the master's name, for a sentinel://HOST:PORT;sentinel://… broker or result backend (kombu's master_name).
    #[arg(long, env = "CELERY_SENTINEL_MASTER")]
    sentinel_master: Option<String>,
}

impl BrokerArgs {
    fn amqp(&self, connection_name: Option<String>) -> AmqpSettings {
        let mut settings = AmqpSettings::new(&self.broker);
        settings.connect_timeout = self.connect_timeout;
        settings.connection_name = connection_name;
        settings.url_setting = "--broker / CELERY_BROKER_URL";
        settings.queue_type = self.queue_type;
        settings.sentinel_master = self.sentinel_master.clone();
        settings
    }

    fn redis(&self) -> RedisOptions {
        RedisOptions {
            connect_timeout: self.connect_timeout,
            sentinel_master: self.sentinel_master.clone(),
        }
    }
}

#[derive(Args, Debug)]
struct WorkerArgs {
    #[command(flatten)]
    broker: BrokerArgs,

    /// Async tasks run at once (default 256: tasks mostly wait on the network, and a slot is cheap).
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: Option<u32>,

    /// Threads for blocking tasks, run beside the async ones (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    blocking_threads: Option<u32>,

    /// Queues to consume, comma-separated.
    #[arg(short = 'Q', long, default_value = "celery", value_delimiter = ',', value_parser = queue_name)]
    queues: Vec<String>,

    /// Where callbacks and chain steps go when they name no queue (Celery's `task_default_queue`).
    #[arg(long, env = "CELERY_QUEUE", default_value = "celery", value_parser = queue_name)]
    default_queue: String,

    /// Prefetch = concurrency × this.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    prefetch_multiplier: u32,

    /// Redis: seconds before an unacked message of a dead worker is restored.
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = VISIBILITY_TIMEOUT)]
    visibility_timeout: Duration,

    /// Node name, as in Celery's `-n` (default celery@%h): %h is the host name, %n its first part, %d the rest.
    #[arg(short = 'n', long, value_parser = node_name)]
    hostname: Option<String>,

    /// Send task events, for monitors such as Flower (`celery worker -E`).
    #[arg(short = 'E', long = "events", alias = "task-events")]
    task_events: bool,

    /// Do not ask the running workers for their revoked task ids at start (saves a second).
    #[arg(long)]
    without_mingle: bool,

    /// First retry delay of the SMS task in seconds (doubles each retry, with jitter).
    #[arg(long, env = "SMS_RETRY_BACKOFF", value_name = "SECONDS", default_value = "2", value_parser = RETRY_BACKOFF)]
    retry_backoff: Duration,

    /// Redis URL for the "SMS already sent" records (default: the broker if Redis, else the result backend).
    #[arg(long, env = "SMS_SENT_RECORDS_URL", hide_env_values = true)]
    sent_records_url: Option<String>,

    /// Also run beat in this process (`celery worker -B`), with the options below.
    #[arg(short = 'B', long)]
    beat: bool,

    #[command(flatten)]
    beat_options: BeatOptions,
}

#[derive(Args, Debug)]
struct BeatArgs {
    #[command(flatten)]
    broker: BrokerArgs,

    #[command(flatten)]
    options: BeatOptions,
}

/// Beat's own settings (for `beat`, and `worker -B`).
#[derive(Args, Debug)]
struct BeatOptions {
    /// Beat: the schedule file (TOML; see beat-schedule.toml).
    #[arg(
        long,
        env = "CELERY_BEAT_SCHEDULE",
        default_value = "beat-schedule.toml"
    )]
    schedule: PathBuf,

    /// Beat: Redis holding the leader lease and the state (default: the broker if Redis, else redis://127.0.0.1:6379/7).
    #[arg(long, env = "CELERY_BEAT_LEASE_REDIS", hide_env_values = true)]
    lease_redis: Option<String>,

    /// Beat: seconds the leader's lease lasts unrenewed; a standby takes over within this after the leader dies.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = LEASE_TTL)]
    lease_ttl: Duration,

    /// Beat: keep the last-run state in this JSON file instead of the Redis hash beat:<name>:state.
    #[arg(long)]
    state: Option<PathBuf>,
}

impl BeatOptions {
    /// Reads the schedule now, so a bad file fails the command at start.
    fn config(self, broker: &BrokerArgs, hostname: String) -> anyhow::Result<BeatConfig> {
        let schedule = beat::schedule::load(&self.schedule)?;
        let mut amqp = broker.amqp(Some(format!("{hostname} beat")));
        amqp.url = broker.broker.clone();
        Ok(BeatConfig {
            schedule,
            lease_redis: self
                .lease_redis
                .unwrap_or_else(|| BeatConfig::default_lease_redis(&broker.broker)),
            broker_url: broker.broker.clone(),
            amqp,
            lease_ttl: self.lease_ttl,
            state_file: self.state,
            hostname,
        })
    }
}

#[derive(Args, Debug)]
struct SendArgs {
    /// The task's arguments: MOBILE CODE for the SMS task.
    args: Vec<String>,

    #[command(flatten)]
    broker: BrokerArgs,

    /// Queue to send to.
    #[arg(long, default_value = "celery", value_parser = queue_name)]
    queue: String,

    /// Send a canvas instead of one task: 'add(2, 2) | mul(8)' (a chain), '[add(1, 1), add(2, 2)]' (a group), '[add(1, 1), add(2, 2)] | xsum()' (a chord).
    #[arg(long, value_name = "EXPRESSION", conflicts_with_all = ["args", "task", "count", "countdown", "eta", "expires"])]
    canvas: Option<String>,

    /// Task name (the blog's task is SMS; `noop` exists for benchmarks).
    #[arg(long, default_value = "SMS", value_parser = not_empty)]
    task: String,

    /// Run no earlier than this many seconds from now.
    #[arg(long, value_name = "SECONDS", value_parser = AHEAD, conflicts_with = "eta")]
    countdown: Option<Duration>,

    /// Run no earlier than this time (ISO-8601, e.g. 2026-11-24T15:44:10+00:00).
    #[arg(long, value_parser = parse_time)]
    eta: Option<DateTime<Utc>>,

    /// Discard the task if not started by then: seconds from now, or an ISO-8601 time.
    #[arg(long, value_parser = parse_expires)]
    expires: Option<DateTime<Utc>>,

    /// Send this many tasks and print the rate (load testing).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// With --count: send at this steady rate (tasks per second) instead of as fast as possible.
    #[arg(long, requires = "count", value_parser = tasks_per_second)]
    rate: Option<f64>,

    /// With --count: print each task's id once the broker has taken it (the summary goes to stderr).
    #[arg(long, requires = "count")]
    ids: bool,

    /// Wait for the result and print it (needs --result-backend).
    #[arg(long)]
    wait: bool,

    /// Seconds to wait with --wait.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = WAIT_TIMEOUT)]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct ResultArgs {
    task_id: String,

    /// Result backend URL (redis://…, or sentinel://… with --sentinel-master).
    #[arg(long, env = "CELERY_RESULT_BACKEND", hide_env_values = true)]
    result_backend: Option<String>,

    /// Seconds to keep retrying the first connection while the result backend starts.
    #[arg(long, env = "CELERY_CONNECT_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = Seconds::CONNECT_TIMEOUT)]
    connect_timeout: Duration,

    /// Redis Sentinel: the master's name, for a sentinel://… result backend.
    #[arg(long, env = "CELERY_SENTINEL_MASTER")]
    sentinel_master: Option<String>,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_celery_time(text)
        .ok_or_else(|| format!("'{text}' is not an ISO-8601 time (e.g. 2026-11-24T15:44:10+00:00)"))
}

fn parse_expires(text: &str) -> Result<DateTime<Utc>, String> {
    if text.trim().parse::<f64>().is_ok() {
        let seconds = AHEAD.parse(text)?;
        return time::after(Utc::now(), seconds).ok_or_else(|| "too far ahead".to_owned());
    }
    parse_time(text).map_err(|_| {
        format!("'{text}' is neither seconds from now (0 to {TEN_YEARS}) nor an ISO-8601 time")
    })
}

/// Celery's node name: `%h` → `host.example.com`, `%n` → `host`, `%d` →
/// `example.com`.
fn node_name(text: &str) -> Result<String, String> {
    let text = not_empty(text)?;
    let host = shared::settings::hostname();
    let (name, domain) = host.split_once('.').unwrap_or((&host, ""));
    let expanded = text
        .replace("%h", &host)
        .replace("%n", name)
        .replace("%d", domain);
    if expanded.contains(char::is_whitespace) {
        return Err(format!("'{expanded}' has spaces: a node name is NAME@HOST"));
    }
    Ok(expanded)
}

fn not_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Worker(args) => run_worker(args).await,
        Command::Send(args) => send(args).await,
        Command::Beat(args) => run_beat(args).await,
        Command::Result(args) => result(args).await,
        Command::Inspect(args) => remote::inspect(args).await,
        Command::Control(command) => remote::control(command).await,
        Command::Status(args) => remote::status(args).await,
    }
}

async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::new().context("installing signal handlers")?;
    Transport::of(&args.broker.broker)?;
    let hostname = args
        .hostname
        .unwrap_or_else(|| format!("celery@{}", shared::settings::hostname()));
    let beat_config = match args.beat {
        true => Some(args.beat_options.config(&args.broker, hostname.clone())?),
        false => None,
    };
    let registry = app::registry(&SmsSettings {
        sent_records_url: args.sent_records_url,
        broker_url: args.broker.broker.clone(),
        result_backend: args.broker.result_backend.clone(),
        redis: args.broker.redis(),
        retry_backoff: args.retry_backoff,
    })
    .await?;
    let config = WorkerConfig {
        amqp: args.broker.amqp(None),
        broker_url: args.broker.broker,
        result_backend: args.broker.result_backend,
        concurrency: args
            .concurrency
            .map_or(worker::DEFAULT_CONCURRENCY, |n| n as usize),
        blocking_pool: args
            .blocking_threads
            .map_or_else(worker::default_blocking_pool, |n| n as usize),
        queues: args.queues,
        default_queue: args.default_queue,
        prefetch_multiplier: args.prefetch_multiplier as usize,
        visibility_timeout: args.visibility_timeout,
        hostname,
        app_name: "celery_tasks".to_owned(),
        banner: true,
        task_events: args.task_events,
        mingle: !args.without_mingle,
    };
    let signals = ShutdownSignals::on(shutdown);
    // -B: beat runs beside the worker and stops on the same first signal.
    // If beat fails, the worker stops too, so the error is not lost in a log.
    let beat = beat_config.map(|config| {
        let warm = signals.warm.clone();
        tokio::spawn(async move {
            let result = beat::run(config, warm.clone()).await;
            if result.is_err() {
                warm.cancel();
            }
            result
        })
    });
    let worker_result = worker::run(config, registry, signals.clone()).await;
    if let Some(beat) = beat {
        signals.warm.cancel();
        beat.await.context("the beat task panicked")??;
    }
    worker_result?;
    Ok(())
}

async fn run_beat(args: BeatArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    Transport::of(&args.broker.broker)?;
    let config = args.options.config(
        &args.broker,
        format!("beat@{}", shared::settings::hostname()),
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.recv().await;
        trigger.cancel();
    });
    beat::run(config, stop).await?;
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    if let Some(expression) = &args.canvas {
        return canvas::send(canvas::CanvasSend {
            expression,
            broker: &args.broker.broker,
            amqp: args.broker.amqp(None),
            result_backend: args.broker.result_backend.as_deref(),
            queue: &args.queue,
            wait: args.wait.then_some(args.timeout),
        })
        .await;
    }
    if args.task == "SMS" && args.args.len() != 2 {
        bail!(
            "the SMS task takes MOBILE CODE (e.g. send 13800000000 123456), got {} argument(s)",
            args.args.len()
        );
    }
    if args.wait && args.result_backend_missing() {
        bail!(
            "--wait needs a result backend: pass --result-backend redis://127.0.0.1:6379/8 (or set CELERY_RESULT_BACKEND)"
        );
    }
    Transport::of(&args.broker.broker)?;
    // `--countdown` is at most ten years (its parser checks), so this fits.
    let countdown = args
        .countdown
        .and_then(|countdown| time::after(Utc::now(), countdown));
    let options = SendOptions {
        eta: args.eta.or(countdown),
        expires: args.expires,
        ..SendOptions::default()
    };
    let task_args: Vec<Value> = args.args.iter().cloned().map(Value::String).collect();
    let mut producer = AnyProducer::connect(&args.broker.broker, args.broker.amqp(None)).await?;

    if let Some(count) = args.count {
        let make = || TaskMessage::new(&args.task, task_args.clone(), Map::new(), &options);
        let sent = send_many(&args, &mut producer, count, make).await;
        producer.close().await;
        return sent;
    }

    let message = TaskMessage::new(&args.task, task_args, Map::new(), &options);
    let id = message.headers.id.clone();
    // Subscribe before sending, as Celery does, so a fast result is not missed.
    let waiter = match (&args.broker.result_backend, args.wait) {
        (Some(url), true) => Some(
            ResultBackend::connect(url, &args.broker.redis())
                .await?
                .subscribe(&id)
                .await?,
        ),
        _ => None,
    };
    producer.send(&message, &args.queue).await?;
    producer.flush().await?;
    producer.close().await;
    print_line(&id)?;
    if let Some(waiter) = waiter {
        let meta = waiter.wait(args.timeout).await?;
        print_result(&meta)?;
    }
    Ok(())
}

/// `send --count N [--rate R] [--ids]`: many tasks, as fast as the broker
/// takes them (one pipelined round trip per thousand on Redis, a confirm
/// window on AMQP) or at a steady rate. Ctrl-C or SIGTERM stops it; what was
/// sent by then is still confirmed and counted.
async fn send_many(
    args: &SendArgs,
    producer: &mut AnyProducer,
    count: u64,
    make: impl Fn() -> TaskMessage,
) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        if futures_lite::future::poll_once(shutdown.recv())
            .await
            .is_some()
        {
            break;
        }
        // With a rate: only what is due by now, so the stream stays steady.
        let due = match args.rate {
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as u64).min(count),
            None => count,
        };
        let batch = due.saturating_sub(sent).min(1000);
        if batch == 0 {
            tokio::select! {
                _ = shutdown.recv() => break,
                () = tokio::time::sleep(Duration::from_millis(10)) => continue,
            }
        }
        let messages: Vec<TaskMessage> = (0..batch).map(|_| make()).collect();
        producer.send_batch(&messages, &args.queue).await?;
        if args.ids {
            // An id is printed only once the broker has taken the task.
            producer.flush().await?;
            for message in &messages {
                print_line(&message.headers.id)?;
            }
        }
        sent += batch;
    }
    producer.flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = format!(
        "sent {sent} tasks to '{}' in {seconds:.2} s: {:.0} tasks/s",
        args.queue,
        sent as f64 / seconds.max(1e-9)
    );
    if args.ids {
        tracing::info!("{summary}");
    } else {
        print_line(summary)?;
    }
    Ok(())
}

/// `--rate`: a positive number of tasks per second, at most a million.
fn tasks_per_second(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1e6 => Ok(rate),
        _ => Err("expected a number of tasks per second from more than 0 to 1000000".to_owned()),
    }
}

impl SendArgs {
    fn result_backend_missing(&self) -> bool {
        self.broker.result_backend.is_none()
    }
}

async fn result(args: ResultArgs) -> anyhow::Result<()> {
    let Some(url) = args.result_backend else {
        bail!(
            "no result backend: pass --result-backend redis://127.0.0.1:6379/8 (or set CELERY_RESULT_BACKEND)"
        );
    };
    let options = RedisOptions {
        connect_timeout: args.connect_timeout,
        sentinel_master: args.sentinel_master,
    };
    let backend = ResultBackend::connect(&url, &options).await?;
    match backend.get(&args.task_id).await? {
        Some(meta) => print_result(&meta),
        None => {
            print_line("PENDING None")?;
            Ok(())
        }
    }
}

/// Prints `STATE result` like `AsyncResult.state` / `.result`; a FAILURE or
/// REVOKED also makes the command fail, as `.get()` raises.
fn print_result(stored: &StoredResult) -> anyhow::Result<()> {
    let state = &stored.status;
    match state {
        TaskState::Failure | TaskState::Revoked | TaskState::Retry => {
            let shown = stored.exception().map_or_else(
                || pyrepr::repr(&stored.result),
                |exception| exception.display(),
            );
            print_line(format_args!("{state} {shown}"))?;
            if *state != TaskState::Retry {
                bail!("task {state}: {shown}");
            }
            Ok(())
        }
        _ => {
            print_line(format_args!("{state} {}", pyrepr::repr(&stored.result)))?;
            Ok(())
        }
    }
}

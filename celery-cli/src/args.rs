//! The command line: Celery's subcommands and flag names, their environment
//! variables, and the checks a value passes before any command runs.
//!
//! [`Cli`] is generic over the application's own flags (`F`), which clap
//! flattens into `worker`; a program without any uses [`NoFlags`].

use std::{path::PathBuf, time::Duration};

use celery_core::{
    beat::{self, BeatConfig},
    config::{self, Settings},
    protocol::time::{self, parse_celery_time},
    redis_connection::RedisOptions,
};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use shared::{
    AmqpSettings, QueueType, Seconds, SecretUrl,
    seconds::{DAY, TEN_YEARS},
    settings::{LogSettings, queue_name},
};

use crate::remote;

// The ranges of the flags given in seconds (see `shared::seconds`).
/// `--lease-ttl`: below half a second the renewals would be all beat does.
const LEASE_TTL: Seconds = Seconds::between(0.5, 3600.0);
/// `--countdown` and `--expires`: no further ahead than ten years.
const AHEAD: Seconds = Seconds::between(0.0, TEN_YEARS);
/// `send --timeout`: how long `--wait` may wait.
const WAIT_TIMEOUT: Seconds = Seconds::between(0.0, DAY);

/// A Celery app's command line, as Rust workers and producers that speak Celery's protocol.
#[derive(Parser, Debug)]
#[command(version, about)]
pub(crate) struct Cli<F: Args> {
    #[command(subcommand)]
    pub command: Command<F>,
    /// A TOML file of Celery settings by their names in lower case (`worker_concurrency = 8`, `[broker_transport_options]`): below flags and CELERY_* variables, above the app's defaults.
    #[arg(long, global = true, env = "CELERY_CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogSettings,
}

/// An application without flags of its own.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct NoFlags {}

#[derive(Subcommand, Debug)]
pub(crate) enum Command<F: Args> {
    /// Run tasks from the queue (`celery worker`).
    Worker(WorkerArgs<F>),
    /// Send a task (`task.delay(*args)`, `celery call`) and print its id.
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

/// The connection flags every command has. Each is a Celery setting: a flag
/// given overrides the environment (`CELERY_<NAME>`), which overrides the
/// configuration file (`--config`), which overrides the app's defaults.
#[derive(Args, Debug)]
pub(crate) struct BrokerArgs {
    /// Broker URL: redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT/VHOST; a RabbitMQ cluster as a ';'-separated list (failover, as in Celery); Redis Sentinel as sentinel://HOST:PORT;sentinel://…/DB with --sentinel-master. [setting: broker_url] [env: CELERY_BROKER_URL]
    #[arg(long)]
    pub(crate) broker: Option<SecretUrl>,

    /// RabbitMQ: the type of the queues declared: classic (the default), or quorum for a cluster. [setting: task_default_queue_type] [env: CELERY_TASK_DEFAULT_QUEUE_TYPE]
    #[arg(long, value_enum)]
    pub(crate) queue_type: Option<QueueType>,

    #[command(flatten)]
    pub(crate) backend: BackendArgs,
}

impl BrokerArgs {
    /// The flags given, over the settings read from elsewhere. The Sentinel
    /// master's name is the broker's too.
    pub(crate) fn apply(&self, settings: &mut Settings) {
        if let Some(url) = &self.broker {
            settings.broker_url = url.clone();
        }
        if let Some(queue_type) = self.queue_type {
            settings.task_default_queue_type = queue_type;
        }
        if let Some(master) = &self.backend.sentinel_master {
            settings.broker_transport_options.master_name = Some(master.clone());
        }
        self.backend.apply(settings);
    }
}

/// The result backend's flags: every command's, and all that `result` needs.
#[derive(Args, Debug)]
pub(crate) struct BackendArgs {
    /// Result backend URL (redis://…, or sentinel://… with --sentinel-master); none by default (results are not stored). [setting: result_backend] [env: CELERY_RESULT_BACKEND]
    #[arg(long)]
    pub(crate) result_backend: Option<SecretUrl>,

    /// Seconds to keep retrying the first connection while the broker (or the result backend) starts [default: 30]. [setting: connect_timeout, ours] [env: CELERY_CONNECT_TIMEOUT]
    #[arg(long, value_name = "SECONDS", value_parser = Seconds::CONNECT_TIMEOUT)]
    pub(crate) connect_timeout: Option<Duration>,

    /// Redis Sentinel: the master's name, for a sentinel://HOST:PORT;sentinel://… broker or result backend. [setting: broker_transport_options.master_name, result_backend_transport_options.master_name] [env: CELERY_SENTINEL_MASTER]
    #[arg(long)]
    pub(crate) sentinel_master: Option<String>,
}

impl BackendArgs {
    /// The flags given, over the settings read from elsewhere.
    pub(crate) fn apply(&self, settings: &mut Settings) {
        if let Some(url) = &self.result_backend {
            settings.result_backend = Some(url.clone());
        }
        if let Some(timeout) = self.connect_timeout {
            settings.connect_timeout = timeout;
        }
        if let Some(master) = &self.sentinel_master {
            settings.result_backend_transport_options.master_name = Some(master.clone());
        }
    }
}

/// How a command connects to an AMQP broker, from the settings.
pub(crate) fn amqp(settings: &Settings, connection_name: Option<String>) -> AmqpSettings {
    let mut amqp = AmqpSettings::new(settings.broker_url.clone());
    amqp.connect_timeout = settings.connect_timeout;
    amqp.connection_name = connection_name;
    amqp.url_setting = "--broker / CELERY_BROKER_URL";
    amqp.queue_type = settings.task_default_queue_type;
    amqp.sentinel_master = settings.broker_transport_options.master_name.clone();
    amqp
}

/// How a command opens the result backend's Redis, from the settings.
pub(crate) fn redis(settings: &Settings) -> RedisOptions {
    RedisOptions {
        connect_timeout: settings.connect_timeout,
        sentinel_master: settings
            .result_backend_transport_options
            .master_name
            .clone()
            .or_else(|| settings.broker_transport_options.master_name.clone()),
    }
}

#[derive(Args, Debug)]
pub(crate) struct WorkerArgs<F: Args> {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,

    /// Async tasks run at once (default 256: tasks mostly wait on the network, and a slot is cheap). [setting: worker_concurrency] [env: CELERY_WORKER_CONCURRENCY]
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) concurrency: Option<u32>,

    /// Threads for blocking tasks, run beside the async ones (default: the number of CPUs). [setting: worker_blocking_threads, ours] [env: CELERY_WORKER_BLOCKING_THREADS]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) blocking_threads: Option<u32>,

    /// Queues to consume, comma-separated (default: the default queue, as in Celery).
    #[arg(short = 'Q', long, value_delimiter = ',', value_parser = queue_name)]
    pub(crate) queues: Vec<String>,

    /// Where tasks, callbacks and chain steps go when they name no queue, and what -Q defaults to [default: celery]. [setting: task_default_queue] [env: CELERY_TASK_DEFAULT_QUEUE]
    #[arg(long, value_parser = queue_name)]
    pub(crate) default_queue: Option<String>,

    /// Prefetch = concurrency × this [default: 4]. [setting: worker_prefetch_multiplier] [env: CELERY_WORKER_PREFETCH_MULTIPLIER]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) prefetch_multiplier: Option<u32>,

    /// Redis: seconds before an unacked message of a dead worker is restored [default: 3600]. [setting: broker_transport_options.visibility_timeout]
    #[arg(long, value_name = "SECONDS", value_parser = config::VISIBILITY_TIMEOUT)]
    pub(crate) visibility_timeout: Option<Duration>,

    /// Node name, as in Celery's `-n` (default celery@%h): %h is the host name, %n its first part, %d the rest.
    #[arg(short = 'n', long, value_parser = node_name)]
    pub(crate) hostname: Option<String>,

    /// Send task events, for monitors such as Flower (`celery worker -E`). [setting: worker_send_task_events] [env: CELERY_WORKER_SEND_TASK_EVENTS]
    #[arg(short = 'E', long = "events", alias = "task-events")]
    pub(crate) task_events: bool,

    /// Do not ask the running workers for their revoked task ids at start (saves a second).
    #[arg(long)]
    pub(crate) without_mingle: bool,

    /// The application's own flags.
    #[command(flatten)]
    pub(crate) app: F,

    /// Also run beat in this process (`celery worker -B`), with the options below.
    #[arg(short = 'B', long)]
    pub(crate) beat: bool,

    #[command(flatten)]
    pub(crate) beat_options: BeatOptions,
}

impl<F: Args> WorkerArgs<F> {
    /// The worker's flags given, over the settings read from elsewhere.
    pub(crate) fn apply(&self, settings: &mut Settings) {
        self.broker.apply(settings);
        if let Some(concurrency) = self.concurrency {
            settings.worker_concurrency = Some(concurrency);
        }
        if let Some(threads) = self.blocking_threads {
            settings.worker_blocking_threads = Some(threads);
        }
        if let Some(queue) = &self.default_queue {
            settings.task_default_queue = queue.clone();
        }
        if let Some(multiplier) = self.prefetch_multiplier {
            settings.worker_prefetch_multiplier = multiplier;
        }
        if let Some(timeout) = self.visibility_timeout {
            settings.broker_transport_options.visibility_timeout = timeout;
        }
        if self.task_events {
            settings.worker_send_task_events = true;
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct BeatArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,

    #[command(flatten)]
    pub(crate) options: BeatOptions,
}

/// Beat's own settings (for `beat`, and `worker -B`).
#[derive(Args, Debug)]
pub(crate) struct BeatOptions {
    /// Beat: the schedule file (TOML; see beat-schedule.toml).
    #[arg(
        long,
        env = "CELERY_BEAT_SCHEDULE",
        default_value = "beat-schedule.toml"
    )]
    pub(crate) schedule: PathBuf,

    /// Beat: Redis holding the leader lease and the state (default: the broker if Redis, else redis://127.0.0.1:6379/7).
    #[arg(long, env = "CELERY_BEAT_LEASE_REDIS", hide_env_values = true)]
    pub(crate) lease_redis: Option<SecretUrl>,

    /// Beat: seconds the leader's lease lasts unrenewed; a standby takes over within this after the leader dies.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = LEASE_TTL)]
    pub(crate) lease_ttl: Duration,

    /// Beat: keep the last-run state in this JSON file instead of the Redis hash beat:<name>:state.
    #[arg(long)]
    pub(crate) state: Option<PathBuf>,
}

impl BeatOptions {
    /// Reads the schedule now, so a bad file fails the command at start.
    pub(crate) fn config(
        self,
        settings: &Settings,
        hostname: String,
    ) -> anyhow::Result<BeatConfig> {
        let schedule = beat::schedule::load(&self.schedule)?;
        let amqp = amqp(settings, Some(format!("{hostname} beat")));
        Ok(BeatConfig {
            schedule,
            lease_redis: self
                .lease_redis
                .unwrap_or_else(|| BeatConfig::default_lease_redis(&settings.broker_url)),
            broker_url: settings.broker_url.clone(),
            amqp,
            lease_ttl: self.lease_ttl,
            state_file: self.state,
            hostname,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// The task's positional arguments, each sent as a string (`--args` takes JSON).
    pub(crate) args: Vec<String>,

    /// The positional arguments as a JSON list, as `celery call --args '[2, 2]'`.
    #[arg(short = 'a', long = "args", value_name = "JSON", conflicts_with = "args", value_parser = json_list)]
    pub(crate) json_args: Option<Vec<serde_json::Value>>,

    /// The keyword arguments as a JSON object, as `celery call --kwargs '{"x": 2}'`.
    #[arg(short = 'k', long, value_name = "JSON", value_parser = json_object)]
    pub(crate) kwargs: Option<serde_json::Map<String, serde_json::Value>>,

    #[command(flatten)]
    pub(crate) broker: BrokerArgs,

    /// Queue to send to (and where a canvas's steps go that name none) [default: the default queue]. [setting: task_default_queue] [env: CELERY_TASK_DEFAULT_QUEUE]
    #[arg(long, value_parser = queue_name)]
    pub(crate) queue: Option<String>,

    /// Send a canvas instead of one task: 'add(2, 2) | mul(8)' (a chain), '[add(1, 1), add(2, 2)]' (a group), '[add(1, 1), add(2, 2)] | xsum()' (a chord).
    #[arg(long, value_name = "EXPRESSION", conflicts_with_all = ["args", "json_args", "kwargs", "task", "count", "countdown", "eta", "expires"])]
    pub(crate) canvas: Option<String>,

    /// The task's registered name (`add`, `proj.tasks.add`).
    #[arg(long, value_parser = not_empty)]
    pub(crate) task: String,

    /// Run no earlier than this many seconds from now.
    #[arg(long, value_name = "SECONDS", value_parser = AHEAD, conflicts_with = "eta")]
    pub(crate) countdown: Option<Duration>,

    /// Run no earlier than this time (ISO-8601, e.g. 2026-11-24T15:44:10+00:00).
    #[arg(long, value_parser = parse_time)]
    pub(crate) eta: Option<DateTime<Utc>>,

    /// Discard the task if not started by then: seconds from now, or an ISO-8601 time.
    #[arg(long, value_parser = parse_expires)]
    pub(crate) expires: Option<DateTime<Utc>>,

    /// Send this many tasks and print the rate (load testing).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,

    /// With --count: send at this steady rate (tasks per second) instead of as fast as possible.
    #[arg(long, requires = "count", value_parser = tasks_per_second)]
    pub(crate) rate: Option<f64>,

    /// With --count: print each task's id once the broker has taken it (the summary goes to stderr).
    #[arg(long, requires = "count")]
    pub(crate) ids: bool,

    /// Wait for the result and print it (needs --result-backend).
    #[arg(long)]
    pub(crate) wait: bool,

    /// Seconds to wait with --wait.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = WAIT_TIMEOUT)]
    pub(crate) timeout: Duration,
}

#[derive(Args, Debug)]
pub(crate) struct ResultArgs {
    pub(crate) task_id: String,

    #[command(flatten)]
    pub(crate) backend: BackendArgs,
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

/// `--args`: a JSON list.
fn json_list(text: &str) -> Result<Vec<serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(items)) => Ok(items),
        Ok(_) => Err("expected a JSON list, such as '[2, 2]'".to_owned()),
        Err(error) => Err(format!(
            "not JSON ({error}): expected a list, such as '[2, 2]'"
        )),
    }
}

/// `--kwargs`: a JSON object.
fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object, such as '{\"x\": 2}'".to_owned()),
        Err(error) => Err(format!(
            "not JSON ({error}): expected an object, such as '{{\"x\": 2}}'"
        )),
    }
}

/// `--rate`: a positive number of tasks per second, at most a million.
fn tasks_per_second(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1e6 => Ok(rate),
        _ => Err("expected a number of tasks per second from more than 0 to 1000000".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The parsed command line holds every URL it was given: its `Debug`
    /// (what a `tracing` field or a bug report shows) hides the passwords.
    #[test]
    fn the_parsed_command_line_logs_no_password() {
        let cli = Cli::<NoFlags>::try_parse_from([
            "proj",
            "worker",
            "--broker",
            "amqp://app:broker-s3cret@rabbit:5672/%2f",
            "--result-backend",
            "redis://:backend-s3cret@redis:6379/8",
            "-B",
            "--lease-redis",
            "redis://:lease-s3cret@redis:6379/9",
        ])
        .unwrap();
        let logged = format!("{cli:?}");
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(logged.contains("amqp://app:**@rabbit"), "{logged}");
    }
}

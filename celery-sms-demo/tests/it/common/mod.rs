//! Test harness: real brokers, our worker binary, real Python Celery.
//!
//! Every test names its own queue (`unique_name`), so tests run in parallel
//! and twice in a row. Redis databases: 12 is the shared test broker, 13 the
//! result backend; tests that shorten the visibility timeout (and so sweep
//! aggressively) get a database of their own. Every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    process::{Child, Command},
    time::{Instant, sleep, timeout},
};

pub const REDIS_BROKER: &str = "redis://127.0.0.1:6379/12";
pub const RESULTS: &str = "redis://127.0.0.1:6379/13";
pub const WORKER: &str = env!("CARGO_BIN_EXE_celery-sms-demo");
pub const WAIT: Duration = Duration::from_secs(60);

pub mod fake_gateway;

pub use shared::testing::{Stream, unique_name};

/// The two transports every interop test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Amqp,
}

impl Kind {
    pub fn broker(self) -> String {
        match self {
            Kind::Redis => REDIS_BROKER.to_owned(),
            Kind::Amqp => shared::testing::amqp_url(),
        }
    }

    /// The same broker, spelled the way Python's kombu wants the vhost.
    pub fn python_broker(self) -> String {
        match self {
            Kind::Redis => REDIS_BROKER.to_owned(),
            Kind::Amqp => self.broker().replace("/%2f", "//").replace("/%2F", "//"),
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's Python (made by `scripts/python-env`, which `scripts/test` runs).
pub fn python() -> PathBuf {
    let path = shared::testing::venv_python();
    assert!(
        path.exists(),
        "no Python venv at {}: run scripts/python-env (scripts/test does)",
        path.display()
    );
    path
}

pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// A running process whose stderr (the log) is collected line by line
/// (`shared::testing::Process`, with this harness's names).
pub struct Process {
    inner: shared::testing::Process,
}

impl Process {
    /// Spawns `command`, collecting its stdout and stderr line by line.
    pub fn spawn(command: Command) -> Process {
        Process {
            inner: shared::testing::Process::spawn(command),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.inner.lines_of(Stream::Stderr)
    }

    pub fn stdout(&self) -> Vec<String> {
        self.inner.lines_of(Stream::Stdout)
    }

    pub fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// Waits until `count` log lines contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize, within: Duration) {
        self.inner
            .wait_for(Stream::Stderr, needle, count, within)
            .await;
    }

    /// Sends a signal: `"-TERM"`, `"-INT"`, `"-KILL"`.
    pub fn signal(&self, signal: &str) {
        self.inner.signal(signal);
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.inner.child.id()
    }

    /// Waits for the exit (bounded), and every line it wrote; returns the
    /// exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        self.inner.wait(WAIT).await
    }

    /// Ids of tasks the log says succeeded (our worker and Celery log alike).
    pub fn succeeded_ids(&self) -> Vec<String> {
        task_ids(&self.log(), "] succeeded in ")
    }
}

/// The longest stretch with no task finished, in seconds, from the log
/// lines' `[2026-12-03 12:20:50,921: …` times: a failover as the work saw it.
pub fn longest_gap_between_successes(log: &[String]) -> f64 {
    // Seconds since midnight (the tests run for minutes, not across midnight).
    let seconds = |line: &str| -> Option<f64> {
        let (hms, millis) = line.get(12..24)?.split_once(',')?;
        let mut parts = hms.split(':').map(|part| part.parse::<f64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        Some(h * 3600.0 + m * 60.0 + s + millis.parse::<f64>().ok()? / 1000.0)
    };
    let times: Vec<f64> = log
        .iter()
        .filter(|line| line.contains("] succeeded in "))
        .filter_map(|line| seconds(line))
        .collect();
    times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max)
}

/// Task ids from lines like `Task SMS[<id>] succeeded in …`.
pub fn task_ids(lines: &[String], marker: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.contains(marker))
        .filter_map(|line| {
            let start = line.find("Task ")? + 5;
            let open = line[start..].find('[')? + start + 1;
            let close = line[open..].find(']')? + open;
            Some(line[open..close].to_owned())
        })
        .collect()
}

/// Starts our worker on `queue` and waits until it is ready.
pub async fn start_worker(kind: Kind, queue: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
    start_worker_on(&kind.broker(), queue, args, env).await
}

pub async fn start_worker_on(
    broker: &str,
    queue: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let mut command = Command::new(WORKER);
    command.args(["worker", "-l", "info", "-Q", queue, "--broker", broker]);
    // A node name of its own: on RabbitMQ a name's mailbox queue is exclusive.
    if !args.contains(&"-n") {
        command.args(["-n", &node_name("rust", queue)]);
    }
    // The shared result backend, unless the test brings its own.
    if !args.contains(&"--result-backend") {
        command.args(["--result-backend", RESULTS]);
    }
    command
        .args(args)
        .env_remove("CELERY_BROKER_URL")
        .env_remove("CELERY_RESULT_BACKEND")
        .env("SMS_GATEWAY", "console");
    for (name, value) in env {
        command.env(name, value);
    }
    let worker = Process::spawn(command);
    worker.wait_for_log(" ready.", 1, WAIT).await;
    worker
}

/// A node name no other worker of this test run has: `rust-<queue>-<n>@test`.
pub fn node_name(prefix: &str, queue: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{queue}-{n}@test")
}

/// Runs the venv's `celery -A celery_tasks.main ARGS` against `kind`
/// (Celery's own CLI); returns (exit code, stdout, stderr).
pub async fn celery_cli(kind: Kind, args: &[&str]) -> (Option<i32>, String, String) {
    let output = timeout(
        WAIT,
        Command::new(python().with_file_name("celery"))
            .current_dir(python_dir())
            .args(["-A", "celery_tasks.main"])
            .args(args)
            .env("CELERY_BROKER_URL", kind.python_broker())
            .env("CELERY_RESULT_BACKEND", RESULTS)
            .output(),
    )
    .await
    .expect("celery CLI timed out")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts a real Python Celery worker (the blog's app) on `queue`.
pub async fn start_python_worker(kind: Kind, queue: &str, env: &[(&str, &str)]) -> Process {
    let celery = python().with_file_name("celery");
    let mut command = Command::new(celery);
    command
        .current_dir(python_dir())
        .args([
            "-A",
            "celery_tasks.main",
            "worker",
            "-l",
            "info",
            "-Q",
            queue,
            "--pool",
            "solo",
        ])
        .args([
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-n",
            &format!("py-{queue}@%h"),
        ])
        .env("CELERY_BROKER_URL", kind.python_broker())
        .env("CELERY_RESULT_BACKEND", RESULTS);
    for (name, value) in env {
        command.env(name, value);
    }
    let worker = Process::spawn(command);
    worker.wait_for_log(" ready.", 1, WAIT).await;
    worker
}

/// Runs `python interop.py ARGS` against `kind`'s broker; returns stdout.
pub async fn interop(kind: Kind, args: &[&str]) -> String {
    interop_with_env(kind, args, &[]).await
}

/// [`interop`] with extra environment (Celery settings from `config.py`).
pub async fn interop_with_env(kind: Kind, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = timeout(
        WAIT,
        Command::new(python())
            .current_dir(python_dir())
            .arg("interop.py")
            .args(args)
            .env("CELERY_BROKER_URL", kind.python_broker())
            .env("CELERY_RESULT_BACKEND", RESULTS)
            .envs(env.iter().copied())
            .output(),
    )
    .await
    .expect("interop.py timed out")
    .unwrap();
    assert!(
        output.status.success(),
        "interop.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `interop.py get ID` as JSON.
pub async fn python_get(kind: Kind, id: &str) -> serde_json::Value {
    serde_json::from_str(&interop(kind, &["get", id, "--timeout", "30"]).await).unwrap()
}

/// Runs our `celery-sms-demo ARGS` (bounded) and returns (exit code, stdout, stderr).
pub async fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let output = timeout(
        WAIT,
        Command::new(WORKER)
            .args(args)
            .env_remove("CELERY_BROKER_URL")
            .env_remove("CELERY_RESULT_BACKEND")
            .output(),
    )
    .await
    .expect("command timed out")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `celery-sms-demo send …` on `kind` to `queue`; returns the task id.
pub async fn send(kind: Kind, queue: &str, args: &[&str]) -> String {
    let broker = kind.broker();
    let mut all = vec![
        "send",
        "--broker",
        broker.as_str(),
        "--result-backend",
        RESULTS,
        "--queue",
        queue,
    ];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_cli(&all).await;
    assert_eq!(code, Some(0), "send failed: {stderr}");
    stdout.lines().next().unwrap_or_default().to_owned()
}

/// A Redis connection to database `url`.
pub async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is not running: scripts/services starts it")
}

/// Removes a queue's lists (Redis) or the queue and its exchange (AMQP).
pub async fn delete_queue(kind: Kind, queue: &str) {
    match kind {
        Kind::Redis => {
            let mut connection = redis(REDIS_BROKER).await;
            let lists = celery_core::protocol::redis_envelope::queue_lists(queue);
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(&lists[..])
                .query_async(&mut connection)
                .await;
        }
        Kind::Amqp => {
            shared::testing::delete_queue(queue).await;
            let connection = shared::testing::test_connection().await;
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(queue.into(), Default::default())
                    .await;
            }
            let _ = connection.close(200, "bye".into()).await;
        }
    }
}

/// Messages waiting in `queue` (all priority lists on Redis).
pub async fn queue_length(kind: Kind, queue: &str) -> usize {
    queue_length_on(&kind.broker(), kind, queue).await
}

/// [`queue_length`] on a given broker URL (a test's own Redis database).
pub async fn queue_length_on(broker: &str, kind: Kind, queue: &str) -> usize {
    match kind {
        Kind::Redis => {
            let mut connection = redis(broker).await;
            let mut total = 0;
            for list in celery_core::protocol::redis_envelope::queue_lists(queue) {
                let length: usize = redis::cmd("LLEN")
                    .arg(list)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                total += length;
            }
            total
        }
        Kind::Amqp => shared::testing::ready_count(queue).await as usize,
    }
}

/// The stored result of a task, if any.
pub async fn stored_result(id: &str) -> Option<serde_json::Value> {
    let mut connection = redis(RESULTS).await;
    let json: Option<String> = redis::cmd("GET")
        .arg(format!("celery-task-meta-{id}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    json.map(|json| serde_json::from_str(&json).unwrap())
}

/// Waits until `id` has a final stored result and returns it.
pub async fn wait_for_result(id: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(meta) = stored_result(id).await
            && matches!(
                meta["status"].as_str(),
                Some("SUCCESS" | "FAILURE" | "REVOKED")
            )
        {
            return meta;
        }
        assert!(Instant::now() < deadline, "no final result for {id}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` of the test's own, on a free port, persisted to a
/// directory of its own with its append-only file fsynced on every write
/// (so a `kill -9` loses nothing it acknowledged). Killing it disturbs no
/// other test. Stopped and removed on drop.
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let dir = std::env::temp_dir().join(unique_name("private-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateRedis {
            child: None,
            port,
            dir,
        };
        server.restart().await;
        server
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Starts it (again, on the same port and data) and waits for a PONG.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (scripts/services installs it)");
        self.child = Some(child);
        let url = self.url(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to save or say goodbye.
    pub async fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Declares `queue` as an operator would, with `arguments` (e.g. a queue
/// type or a delivery limit), dead-lettering to `dead_letter_queue` through
/// the default exchange; declares that queue too. Both are durable.
pub async fn declare_dead_lettered_queue(
    queue: &str,
    dead_letter_queue: &str,
    arguments: serde_json::Value,
) {
    let connection = shared::testing::test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(dead_letter_queue.into(), durable, Default::default())
        .await
        .unwrap();
    let mut arguments = arguments.as_object().cloned().unwrap_or_default();
    arguments.insert("x-dead-letter-exchange".into(), "".into());
    arguments.insert("x-dead-letter-routing-key".into(), dead_letter_queue.into());
    channel
        .queue_declare(
            queue.into(),
            durable,
            celery_core::protocol::amqp_table::to_field_table(&arguments),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "bye".into()).await;
}

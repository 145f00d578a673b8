//! Test support for the tutorials: a vhost per test, and the two sides
//! (our binaries, the pika scripts) as processes whose lines we can wait for.
//!
//! The tutorials' names are fixed (`task_queue`, `logs`, `rpc_queue`…), so a
//! test cannot pick its own queue names. It gets its own virtual host
//! instead: every queue and exchange a test touches lives there, tests run in
//! parallel without meeting, and deleting the vhost cleans up everything.
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use shared::testing::Stream;
use tokio::{
    process::Command,
    time::{Instant, sleep},
};

/// The management API the tests create their vhosts through.
fn api() -> String {
    std::env::var("RABBITMQ_API_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

fn http() -> reqwest::Client {
    // The workspace builds reqwest without a crypto provider; pick rustls' ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A virtual host of the test's own, deleted by [`Vhost::delete`] — or, if
/// the test fails before that, when it drops.
#[derive(Debug)]
pub struct Vhost {
    pub name: String,
    deleted: bool,
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if !self.deleted {
            // A failed test: no runtime to await on here, so the CLI does it.
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["-q", "delete_vhost", &self.name])
                .output();
        }
    }
}

impl Vhost {
    pub async fn new() -> Vhost {
        let name = shared::testing::unique_name("tutorials");
        let client = http();
        let created = client
            .put(format!("{}/api/vhosts/{name}", api()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "the RabbitMQ management API is not reachable ({error}); run scripts/services"
                )
            });
        assert!(
            created.status().is_success(),
            "creating vhost {name}: {created:?}"
        );
        let granted = client
            .put(format!("{}/api/permissions/{name}/guest", api()))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(
            granted.status().is_success(),
            "granting {name}: {granted:?}"
        );
        Vhost {
            name,
            deleted: false,
        }
    }

    /// The broker URL for this vhost, for both our binaries and pika.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Waits until `queue` holds `expected` ready messages, and (for 0) that
    /// it stays so for a moment: a message whose consumer just went away is
    /// requeued a little later, and must not be missed.
    pub async fn assert_ready(&self, queue: &str, expected: u32) {
        let deadline = Instant::now() + WAIT;
        while self.ready(queue).await != expected {
            assert!(
                Instant::now() < deadline,
                "'{queue}' never held {expected} ready messages"
            );
            sleep(Duration::from_millis(50)).await;
        }
        if expected == 0 {
            sleep(Duration::from_millis(700)).await;
            assert_eq!(
                self.ready(queue).await,
                0,
                "a message came back to '{queue}'"
            );
        }
    }

    /// Ready messages in `queue` (0 when it does not exist).
    pub async fn ready(&self, queue: &str) -> u32 {
        let connection = lapin::Connection::connect(&self.url(), Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let count = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .map(|queue| queue.message_count())
            .unwrap_or(0);
        let _ = connection.close(200, "bye".into()).await;
        count
    }

    /// Names of the queues in this vhost (from the management API).
    pub async fn queue_names(&self) -> Vec<String> {
        let queues: serde_json::Value = http()
            .get(format!("{}/api/queues/{}", api(), self.name))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        queues
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|queue| queue["name"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn delete(mut self) {
        self.deleted = true;
        let _ = http()
            .delete(format!("{}/api/vhosts/{}", api(), self.name))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
    }
}

/// Our binary `name` (built by cargo for this test), pointed at `vhost`.
pub fn rust(name: &str, args: &[&str], vhost: &Vhost) -> Command {
    let binary = match name {
        "new_task" => env!("CARGO_BIN_EXE_new_task"),
        "worker" => env!("CARGO_BIN_EXE_worker"),
        "emit_log" => env!("CARGO_BIN_EXE_emit_log"),
        "receive_logs" => env!("CARGO_BIN_EXE_receive_logs"),
        "emit_log_direct" => env!("CARGO_BIN_EXE_emit_log_direct"),
        "receive_logs_direct" => env!("CARGO_BIN_EXE_receive_logs_direct"),
        "emit_log_topic" => env!("CARGO_BIN_EXE_emit_log_topic"),
        "receive_logs_topic" => env!("CARGO_BIN_EXE_receive_logs_topic"),
        "rpc_server" => env!("CARGO_BIN_EXE_rpc_server"),
        "rpc_client" => env!("CARGO_BIN_EXE_rpc_client"),
        "publisher_confirms" => env!("CARGO_BIN_EXE_publisher_confirms"),
        other => panic!("no binary {other}"),
    };
    let mut command = Command::new(binary);
    command.args(args).env("AMQP_URL", vhost.url());
    command
}

/// The pika script `name`.py from `tutorials/python`, run by the venv's Python.
pub fn python(name: &str, args: &[&str], vhost: &Vhost) -> Command {
    let venv = shared::testing::venv_python();
    assert!(
        venv.exists(),
        "no Python venv at {}: run scripts/python-env (scripts/test does)",
        venv.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(format!("{name}.py"));
    let mut command = Command::new(venv);
    // -u: unbuffered, so each print reaches the pipe as it happens.
    command
        .arg("-u")
        .arg(script)
        .args(args)
        .env("AMQP_URL", vhost.url());
    command
}

/// Which side of a parity test a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Rust,
    Python,
}

impl Side {
    pub fn command(self, name: &str, args: &[&str], vhost: &Vhost) -> Command {
        match self {
            Side::Rust => rust(name, args, vhost),
            Side::Python => python(name, args, vhost),
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Rust => Side::Python,
            Side::Python => Side::Rust,
        }
    }
}

/// How long any one step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running program, its stdout and stderr collected line by line
/// (`shared::testing::Process`, with this harness's names).
pub struct Running {
    inner: shared::testing::Process,
}

impl Running {
    pub fn start(command: Command) -> Running {
        Running {
            inner: shared::testing::Process::spawn(command),
        }
    }

    /// Starts the program and waits for the line that says it is ready.
    pub async fn ready(command: Command, line: &str) -> Running {
        let running = Running::start(command);
        running.wait_for(line, 1).await;
        running
    }

    pub fn stdout(&self) -> Vec<String> {
        self.inner.lines_of(Stream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.inner.lines_of(Stream::Stderr).join("\n")
    }

    /// Waits until `count` stdout lines contain `needle`.
    pub async fn wait_for(&self, needle: &str, count: usize) {
        self.inner
            .wait_for(Stream::Stdout, needle, count, WAIT)
            .await;
    }

    /// Waits until the log (stderr) contains `needle`.
    pub async fn wait_for_stderr(&self, needle: &str) {
        self.inner.wait_for(Stream::Stderr, needle, 1, WAIT).await;
    }

    /// Sends a signal: `"-TERM"`, `"-INT"`, `"-KILL"`.
    pub fn signal(&self, signal: &str) {
        self.inner.signal(signal);
    }

    /// Waits (bounded) for the exit; returns the exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        self.inner.wait(WAIT).await
    }

    /// Ctrl-C, then the exit code. A moment passes first: the tutorials'
    /// workers print ` [x] Done` *before* they ack, and a Ctrl-C right on
    /// that line could beat the ack (the message would come back).
    pub async fn interrupt(&mut self) -> Option<i32> {
        sleep(Duration::from_millis(100)).await;
        self.signal("-INT");
        self.wait().await
    }
}

/// Runs a program that ends by itself (a sender), asserts it succeeded, and
/// returns its stdout lines.
pub async fn run(command: Command) -> Vec<String> {
    let mut running = Running::start(command);
    let code = running.wait().await;
    assert_eq!(code, Some(0), "stderr: {}", running.stderr());
    running.stdout()
}

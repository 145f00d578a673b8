//! Test support for the other crates' integration tests (feature `test-support`,
//! i.e. `#[cfg(test)]`-only code of other crates): panics here fail a test loudly.
//!
//! Every test gets its own queue name, so tests can run in parallel and twice
//! in a row; fault injection closes only the test's own connection, found by
//! the connection name the test chose.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lapin::{Connection, ConnectionProperties, options::QueueDeleteOptions};

pub mod cluster;
mod process;
mod sweep;
pub use process::{Process, Stream, send_signal, venv_python};
pub use sweep::{Sweep, hostile_values};

/// The broker the tests use: `AMQP_URL`, or the blog's default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| crate::settings::DEFAULT_AMQP_URL.to_owned())
}

/// A name no other test (or earlier run of this one) uses: `prefix-<pid>-<time>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// A plain connection for the test's own side (publishing, inspecting).
/// Panics with instructions when RabbitMQ is down, so the whole suite fails
/// at once with a message that says how to start it.
pub async fn test_connection() -> Connection {
    let url = amqp_url();
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        other => panic!(
            "RabbitMQ is not reachable at {} ({other:?}). Start it with `rabbitmq-server -detached` \
             (or `docker compose up -d rabbitmq`), or set AMQP_URL.",
            crate::redact::Redacted(&url)
        ),
    }
}

/// Deletes a test queue (ignores a queue that is already gone).
pub async fn delete_queue(name: &str) {
    let connection = test_connection().await;
    if let Ok(channel) = connection.create_channel().await {
        let _ = channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "bye".into()).await;
}

/// Number of ready messages in `queue` (passive declare; 0 if it does not exist).
pub async fn ready_count(name: &str) -> u32 {
    let connection = test_connection().await;
    let count = match connection.create_channel().await {
        Ok(channel) => channel
            .queue_declare(
                name.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .map(|queue| queue.message_count())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let _ = connection.close(200, "bye".into()).await;
    count
}

/// A queue's `(ready, unacknowledged)` message counts, exact (from
/// `rabbitmqctl`, not the management API's sampled statistics); `None` if
/// the queue does not exist.
pub fn queue_counts(name: &str) -> Option<(u64, u64)> {
    let output = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .unwrap_or_else(|error| panic!("rabbitmqctl is needed for this test: {error}"));
    let listing = String::from_utf8_lossy(&output.stdout);
    listing.lines().find_map(|line| {
        let mut fields = line.split('\t');
        if fields.next() != Some(name) {
            return None;
        }
        let ready = fields.next()?.trim().parse().ok()?;
        let unacked = fields.next()?.trim().parse().ok()?;
        Some((ready, unacked))
    })
}

/// Force-closes the broker connection(s) whose name contains `name_part`,
/// like an operator running `rabbitmqctl close_connection`. Returns how many
/// were closed. Only the caller's own connections match, so tests running
/// beside it are not disturbed.
pub fn close_connections_named(name_part: &str) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output();
    let Ok(output) = output else {
        panic!("rabbitmqctl is needed for fault-injection tests");
    };
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(name_part)) {
        let Some(pid) = line.split('\t').next() else {
            continue;
        };
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "fault injected by a test"])
            .status();
        if status.map(|s| s.success()).unwrap_or(false) {
            closed += 1;
        }
    }
    closed
}

/// What a finished command printed, for bad-input tests.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the contract for bad input: a non-zero exit, no panic, and one
    /// `error: …` line on stderr that contains every one of `needles`.
    pub fn assert_one_line_error(&self, needles: &[&str]) {
        assert_ne!(self.code, Some(0), "expected a failure: {self:?}");
        assert!(self.code.is_some(), "killed by a signal: {self:?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "panicked: {}",
            self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line expected: {}", self.stderr);
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "'{needle}' missing from: {}",
                errors[0]
            );
        }
    }
}

/// Runs one of the workspace's binaries to completion (bounded by `timeout`).
pub fn run_cli(binary: &str, args: &[&str], timeout: Duration) -> CliOutput {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                panic!("{binary} {args:?} did not finish within {timeout:?}");
            }
        }
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("cannot read the output of {binary}: {error}"));
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts that `binary command… --help` shows no password: not the
/// defaults' (`amqp://guest:guest@…`), and not one set in the environment.
pub fn assert_help_hides_passwords(binary: &str, command: &[&str]) {
    let secret = "s3cret-in-env";
    let url = format!("amqp://guest:{secret}@127.0.0.1:5672/%2f");
    let mut run = Command::new(binary);
    run.args(command).arg("--help");
    for name in [
        "AMQP_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "SMS_SENT_RECORDS_URL",
        "CELERY_BEAT_LEASE_REDIS",
        "RABBITMQ_ADMIN_PASSWORD",
        "RABBITMQ_NEW_USER_PASSWORD",
    ] {
        run.env(name, &url);
    }
    let output = run
        .output()
        .unwrap_or_else(|error| panic!("cannot run {binary}: {error}"));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage:"), "no help: {help}");
    for leaked in [secret, "guest:guest"] {
        assert!(
            !help.contains(leaked),
            "'{leaked}' in the help of {binary} {command:?}:\n{help}"
        );
    }
    // No default shows a password: a URL's is masked, a password flag's hidden.
    let mut option = "";
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') && line.len() - trimmed.len() <= 6 {
            option = trimmed;
        }
        let Some(start) = line.find("[default: ") else {
            continue;
        };
        let default = line[start + 10..].split(']').next().unwrap_or_default();
        assert!(
            crate::redact::Redacted(default).to_string() == default
                && !option.to_ascii_lowercase().contains("password"),
            "a password shown as the default of {option} in the help of {binary} {command:?}: {line}"
        );
    }
}

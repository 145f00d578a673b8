//! A program under test: spawned with its stdout and stderr collected line
//! by line, waited on for a line (woken by each new line, not by polling),
//! signalled through `nix` (no `kill` process), and waited for, bounded.
//!
//! The integration tests of the demo, the tutorials and the CLI crate all
//! drive programs this way; each crate's own harness wraps it with the
//! names its tests use.

use std::{
    ffi::OsStr,
    path::PathBuf,
    process::Stdio,
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::Notify,
    task::JoinHandle,
    time::{Instant, timeout},
};

/// The venv's Python (made by `scripts/python-env`, which `scripts/test`
/// runs), or `CELERY_PYTHON`.
pub fn venv_python() -> PathBuf {
    std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

/// Lines read so far from one stream, and a wake-up for each new one.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Notify,
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, needle: &str) -> usize {
        self.lock()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }
}

/// Which stream of the program to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A running program.
pub struct Process {
    pub child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    collectors: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Process {
    /// Spawns `command` (stdin closed, killed when dropped), collecting
    /// both of its streams.
    pub fn spawn(mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = command.as_std().get_program().to_owned();
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", show(&program))); // ok-panic: test support only
        let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        let mut collectors = Vec::new();
        if let Some(out) = child.stdout.take() {
            collectors.push(collect(out, stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            collectors.push(collect(err, stderr.clone()));
        }
        Process {
            child,
            stdout,
            stderr,
            collectors,
        }
    }

    fn lines(&self, stream: Stream) -> &Lines {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// The lines of `stream` so far.
    pub fn lines_of(&self, stream: Stream) -> Vec<String> {
        self.lines(stream).lock().clone()
    }

    /// Waits until `count` lines of `stream` contain `needle`; panics with
    /// both streams after `within`.
    pub async fn wait_for(&self, stream: Stream, needle: &str, count: usize, within: Duration) {
        let lines = self.lines(stream);
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check, so a line that arrives between
            // the check and the wait still wakes it.
            let grew = lines.grew.notified();
            tokio::pin!(grew);
            grew.as_mut().enable();
            if lines.count(needle) >= count {
                return;
            }
            if timeout(deadline.saturating_duration_since(Instant::now()), grew)
                .await
                .is_err()
            {
                let seen = format!(
                    "stdout:\n{}\nstderr:\n{}",
                    self.lines_of(Stream::Stdout).join("\n"),
                    self.lines_of(Stream::Stderr).join("\n")
                );
                panic!("timed out waiting for {count}× '{needle}' on {stream:?}; {seen}"); // ok-panic: test support only
            }
        }
    }

    /// Sends `signal` (`"-TERM"`, `"INT"`, `"SIGKILL"`) to the program.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the program already exited")); // ok-panic: test support only
        send_signal(pid, signal);
    }

    /// Waits (bounded by `within`) for the exit, then for every line the
    /// program wrote; returns the exit code (`None`: ended by a signal).
    pub async fn wait(&mut self, within: Duration) -> Option<i32> {
        let status = timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the program did not exit within {within:?}")) // ok-panic: test support only
            .unwrap_or_else(|error| panic!("waiting for the program: {error}")); // ok-panic: test support only
        for collector in self.collectors.drain(..) {
            let _ = timeout(within, collector).await;
        }
        status.code()
    }
}

/// Sends `signal` (`"-TERM"`, `"INT"`, `"SIGKILL"`) to process `pid`,
/// through `nix` (no `kill` process to spawn).
pub fn send_signal(pid: u32, signal: &str) {
    let name = format!(
        "SIG{}",
        signal.trim_start_matches('-').trim_start_matches("SIG")
    );
    let signal =
        Signal::from_str(&name).unwrap_or_else(|error| panic!("no signal {name}: {error}")); // ok-panic: test support only
    let pid = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range")); // ok-panic: test support only
    nix::sys::signal::kill(Pid::from_raw(pid), signal)
        .unwrap_or_else(|error| panic!("{name} to {pid}: {error}")); // ok-panic: test support only
}

fn show(program: &OsStr) -> String {
    program.to_string_lossy().into_owned()
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, sink: Arc<Lines>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().push(line);
            sink.grew.notify_waiters();
        }
    })
}

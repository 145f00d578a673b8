//! Logging to stderr in Celery's format, at the level given by `-l`.
//!
//! Program output (message bodies, task ids) goes to stdout and logs go to
//! stderr, so `consumer > bodies.txt` captures exactly the messages. The line
//! format is Celery's own, `[2026-11-24 15:42:41,723: INFO/MainProcess] …`,
//! so a Rust worker's log reads like the Python worker's it sits next to.
//!
//! Lines are buffered (`logging/buffer.rs`): a worker at `-l info` logs two
//! lines per task, and one `write` system call per line was a quarter to a
//! third of its CPU time at 20,000 tasks/s. Warnings and errors still go out
//! at once, the rest within 10 ms — and a worker calls [`flush`] before it
//! acks, so a task's log line is never lost while its ack went through.

mod buffer;

use std::fmt;

use chrono::{Datelike, Timelike};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

use crate::settings::LogLevel;

pub use buffer::flush;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `-l`.
///
/// Keep the returned guard alive until the program ends: dropping it writes
/// out whatever is still buffered.
#[must_use = "buffered log lines are written out when the guard drops"]
pub fn init(level: LogLevel) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(level));
    // A second init (tests run many `run()`s in one process) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_writer(buffer::BufferedStderr::start())
        .with_ansi(false)
        .event_format(CeleryFormat)
        .with_env_filter(filter)
        .try_init();
    LogGuard
}

/// Writes out the buffered log lines when dropped (at the end of `main`).
#[derive(Debug)]
pub struct LogGuard;

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush();
    }
}

fn default_filter(level: LogLevel) -> EnvFilter {
    let ours = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    // lapin logs every channel error itself, and we turn each of those into
    // one clear message of our own; show its view only when debugging.
    let lapin = if level == LogLevel::Debug {
        "debug"
    } else {
        "off"
    };
    EnvFilter::new(format!("{ours},lapin={lapin},amq_protocol={lapin}"))
}

/// `[%(asctime)s: %(levelname)s/%(processName)s] %(message)s`, plus any
/// structured fields after the message.
struct CeleryFormat;

impl<S, N> FormatEvent<S, N> for CeleryFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Local::now().naive_local();
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        // Written field by field: strftime parsing its pattern on every line
        // was measurable at tens of thousands of lines a second.
        write!(
            writer,
            "[{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}: {level}/MainProcess] ",
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.and_utc().timestamp_subsec_millis()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

//! The buffer between the log formatter and stderr.
//!
//! Formatted lines are appended to one in-memory buffer instead of being
//! written one system call each. A background thread writes the buffer out
//! [`FLUSH_DELAY`] after it stops being empty, so at high rates hundreds of
//! lines leave in one `write`, and at low rates a line still shows up at
//! once to the eye. A warning or an error is written out immediately, with
//! everything logged before it, so what a user must see is never late or out
//! of order; [`flush`] does the same on demand (before an ack, at exit).

use std::{
    io::{self, Write},
    sync::{
        Condvar, Mutex, MutexGuard, Once, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in the buffer.
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// Write out early once this much is waiting.
const HIGH_WATER: usize = 64 * 1024;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static NOT_EMPTY: Condvar = Condvar::new();
/// False until the flusher thread runs; until then every line is urgent.
static BUFFERING: AtomicBool = AtomicBool::new(false);

/// Writes every buffered log line to stderr now.
pub fn flush() {
    // Holding stderr's lock while taking the bytes keeps concurrent flushes
    // (and `eprintln!`s) in the order the lines were logged, and lets new
    // lines be appended while these are being written.
    let mut stderr = io::stderr().lock();
    let bytes = std::mem::take(&mut *pending());
    if !bytes.is_empty() {
        // If stderr itself fails there is nowhere left to report it.
        let _ = stderr.write_all(&bytes);
        let _ = stderr.flush();
    }
}

fn pending() -> MutexGuard<'static, Vec<u8>> {
    // A panic elsewhere while holding the lock leaves whole bytes behind,
    // never a broken buffer: carry on with it.
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for lines, lets more gather for [`FLUSH_DELAY`], writes them out.
fn flusher() {
    loop {
        drop(
            NOT_EMPTY
                .wait_while(pending(), |bytes| bytes.is_empty())
                .unwrap_or_else(PoisonError::into_inner),
        );
        thread::sleep(FLUSH_DELAY);
        flush();
    }
}

/// `tracing-subscriber`'s writer: one [`LineWriter`] per formatted line.
#[derive(Debug, Clone, Copy)]
pub struct BufferedStderr;

impl BufferedStderr {
    /// The writer, with its flusher thread started (once per process) and a
    /// panic hook that writes the buffer out before the panic message.
    pub fn start() -> Self {
        static STARTED: Once = Once::new();
        STARTED.call_once(|| {
            let spawned = thread::Builder::new()
                .name("log-flusher".into())
                .spawn(flusher);
            BUFFERING.store(spawned.is_ok(), Ordering::Release);
            let report_panic = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // try_lock: the panicking thread might hold the lock itself.
                if let Ok(mut bytes) = PENDING.try_lock() {
                    let _ = io::stderr().write_all(&std::mem::take(&mut *bytes));
                }
                report_panic(info);
            }));
        });
        BufferedStderr
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        // In tracing's order, less verbose is smaller: WARN and ERROR.
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Appends one formatted line to the buffer.
#[derive(Debug)]
pub struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut bytes = pending();
        let was_empty = bytes.is_empty();
        bytes.extend_from_slice(line);
        let full = bytes.len() >= HIGH_WATER;
        drop(bytes);
        if self.urgent || full || !BUFFERING.load(Ordering::Acquire) {
            flush();
        } else if was_empty {
            NOT_EMPTY.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

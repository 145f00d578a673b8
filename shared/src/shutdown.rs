//! Stopping on Ctrl-C or SIGTERM.
//!
//! `start_consuming()` in the blog stops with a `KeyboardInterrupt` traceback
//! wherever it happens to be. Here a signal is just a future that resolves,
//! so the code that is running decides where it is safe to stop: after the
//! message in hand is printed and acked, never in the middle.
//!
//! Celery's convention is followed for long-running workers: the first signal
//! asks for a *warm* shutdown (finish what is in hand), a second one for a
//! *cold* one (stop now; the broker redelivers whatever was not acked).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The process's Ctrl-C and SIGTERM, as a future you can await repeatedly.
///
/// Create it first thing in `main`: once it exists the signals no longer kill
/// the process, so a SIGTERM that arrives while we are still connecting is
/// handled like any other instead of killing us half-way.
#[derive(Debug)]
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next Ctrl-C or SIGTERM, and says which one it was.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

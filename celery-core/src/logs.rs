//! The one thing the library asks of the program's logger: to write out
//! what it holds before a task is acked.
//!
//! A program may buffer its log lines (`celery-cli` does: one `write` per
//! line was a quarter of a busy worker's CPU). A worker killed right after
//! an ack must still have logged the tasks it ran, so before each batch of
//! acks the worker calls the flush the program registered here. Without one,
//! nothing is called: an unbuffered logger needs none.

use std::sync::OnceLock;

static FLUSH: OnceLock<fn()> = OnceLock::new();

/// Registers the program's log flush (the first registration stays).
pub fn flush_with(flush: fn()) {
    let _ = FLUSH.set(flush);
}

/// Writes out the program's buffered log lines, if it registered a flush.
pub(crate) fn flush() {
    if let Some(flush) = FLUSH.get() {
        flush();
    }
}

//! celery-cli's integration tests: the command line in-process, and the example worker called from Python.
//!
//! One test binary for the crate (a module per file), not one per file:
//! each binary links the whole dependency graph again, and that linking was
//! most of the test build.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_process;
mod python_parity;
mod settings;
mod your_own_task;

//! celery-sms-demo's integration tests: real brokers, our worker binary, real Python Celery.
//!
//! One test binary for the crate (a module per file), not one per file:
//! each binary links the whole dependency graph again, and that linking was
//! most of the test build.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod beat;
mod canvas;
mod cluster;
mod common;
mod flag_sweep;
mod flower;
mod fuzz_replay;
mod interop;
mod quorum;
mod reliability;
mod remote_control;
mod sentinel;

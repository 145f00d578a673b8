//! The producer's integration tests, against the real RabbitMQ.
//!
//! One test binary for the crate (a module per file), not one per file:
//! each binary links the whole dependency graph again, and that linking was
//! most of the test build.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flag_sweep;
mod producer;

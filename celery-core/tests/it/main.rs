//! celery-core's integration tests, one binary: a worker run in-process
//! against the real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blocking_pool;
mod in_task;

//! A Celery worker for Celery 5.7's integration-suite tasks:
//!
//! ```text
//! cargo run -p integration-tasks -- worker -Q rust --result-backend redis://localhost:6379/0
//! ```
//!
//! `bench/celery_suite.sh mixed` starts it and routes these tasks to it.

use std::process::ExitCode;

use anyhow::Context;
use celery_cli::{App, Setup};

fn main() -> ExitCode {
    App::new("t.integration")
        .tasks_from(async |_: Setup<_>| {
            let redis = integration_tasks::redis_connection()
                .await
                .context("the suite's Redis (REDIS_HOST, REDIS_PORT)")?;
            Ok(integration_tasks::tasks::registry(redis))
        })
        .main()
}

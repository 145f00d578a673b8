//! Tutorial 2's `worker.py`: take tasks from `task_queue`, one at a time.
//!
//! ```text
//! cargo run -p tutorials --bin worker     # in two terminals: two competing workers
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shared::{AmqpError, AmqpSettings, Shutdown, connect_amqp, logging, settings::LogSettings};
use tutorials::work::{self, Stopped};

/// Work through the tasks in 'task_queue': one second per '.', ack when done.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Unacked tasks this worker may hold (basic_qos prefetch_count, per consumer).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,

    #[command(flatten)]
    amqp: AmqpSettings,

    #[command(flatten)]
    log: LogSettings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = logging::init(cli.log.level);
    shared::cli::exit_code(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    let connection = connect_amqp(&cli.amqp, "worker").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    shared::declare_queue(&channel, &work::task_queue()).await?;
    let stopped = work::run_worker(&channel, cli.prefetch, &mut shutdown).await?;
    // Closing returns an unacked task to the queue, for another worker.
    let _ = connection.close(200, "bye".into()).await;
    if stopped == Stopped::TaskReturned {
        anyhow::bail!("stopped during a task; it is back in 'task_queue' for another worker");
    }
    Ok(())
}

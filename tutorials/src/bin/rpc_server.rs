//! Tutorial 6's `rpc_server.py`: answer `fib(n)` requests from `rpc_queue`.
//!
//! ```text
//! cargo run -p tutorials --bin rpc_server
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shared::{
    AmqpError, AmqpSettings, QueueSpec, Shutdown, connect_amqp, logging, settings::LogSettings,
};
use tutorials::rpc::{RPC_QUEUE, server};

/// Answer Fibonacci requests from 'rpc_queue', acking each after its reply.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Requests this server may hold unacked (basic_qos prefetch_count, per consumer).
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
    let connection = connect_amqp(&cli.amqp, "rpc_server").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    // A durable quorum queue, as the tutorial declares it today.
    shared::declare_queue(&channel, &QueueSpec::new(RPC_QUEUE).quorum()).await?;
    server::serve(&channel, cli.prefetch, &mut shutdown).await?;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

//! Tutorial 3's `receive_logs.py`: print every message sent to the `logs` fanout.
//!
//! ```text
//! cargo run -p tutorials --bin receive_logs > logs_from_rabbit.log   # one terminal
//! cargo run -p tutorials --bin receive_logs                          # another
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, Shutdown, connect_amqp, logging, settings::LogSettings};
use tutorials::{
    exchange,
    subscribe::{self, LineFormat},
};

/// Print every log message broadcast on the 'logs' fanout exchange.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
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
    let connection = connect_amqp(&cli.amqp, "receive_logs").await?;
    let channel = connection.create_channel().await?;
    exchange::declare_exchange(&channel, "logs", ExchangeKind::Fanout).await?;
    // One binding; a fanout ignores its key.
    let (channel, queue) = subscribe::private_queue(&connection, "logs", &[String::new()]).await?;
    subscribe::print_until_stopped(&channel, &queue, LineFormat::Body, &mut shutdown).await?;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

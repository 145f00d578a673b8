//! Tutorial 3's `emit_log.py`: broadcast one log line to the `logs` fanout.
//!
//! ```text
//! cargo run -p tutorials --bin emit_log -- "info: Hello World!"
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::{args::message_or, exchange};

/// Send a log message to every receiver bound to the 'logs' fanout exchange.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The message: all words joined by spaces [default: info: Hello World!]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,

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
    let message = message_or(&cli.words, "info: Hello World!");
    // A fanout ignores the routing key: every bound queue gets a copy.
    exchange::emit(
        &cli.amqp,
        "emit_log",
        "logs",
        ExchangeKind::Fanout,
        "",
        &message,
    )
    .await?;
    shared::cli::print_line(format_args!(" [x] Sent {message}"))?;
    Ok(())
}

//! Tutorial 3's `receive_logs.py`: print every message sent to the `logs` fanout.
//!
//! ```text
//! cargo run -p tutorials --bin receive_logs > logs_from_rabbit.log   # one terminal
//! cargo run -p tutorials --bin receive_logs                          # another
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::subscribe::{LineFormat, receive};

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
    // One binding; a fanout ignores its key.
    let binding = [String::new()];
    shared::cli::exit_code(
        receive(
            &cli.amqp,
            "receive_logs",
            "logs",
            ExchangeKind::Fanout,
            &binding,
            LineFormat::Body,
        )
        .await,
    )
}

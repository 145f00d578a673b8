//! Tutorial 4's `receive_logs_direct.py`: print the messages of `direct_logs` that match our bindings.
//!
//! ```text
//! cargo run -p tutorials --bin receive_logs_direct -- warning error > logs_from_rabbit.log
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::subscribe::{LineFormat, receive};

/// Print the log messages of the given severities from the 'direct_logs' exchange.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Severities to receive, e.g. info warning error (one binding each).
    #[arg(value_name = "SEVERITY")]
    binding_keys: Vec<String>,

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
    if cli.binding_keys.is_empty() {
        // The script prints its usage and exits with 1; so do we, as one line.
        anyhow::bail!(
            "no SEVERITY given: name at least one to bind, e.g. `receive_logs_direct info warning error`"
        );
    }
    receive(
        &cli.amqp,
        "receive_logs_direct",
        "direct_logs",
        ExchangeKind::Direct,
        &cli.binding_keys,
        LineFormat::RoutingKeyAndBody,
    )
    .await
}

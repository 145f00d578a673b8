//! Tutorial 5's `receive_logs_topic.py`: print the messages of `topic_logs` that match our bindings.
//!
//! ```text
//! cargo run -p tutorials --bin receive_logs_topic -- "kern.*" "*.critical"
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::subscribe::{LineFormat, receive};

/// Print the log messages whose topic matches a pattern, from the 'topic_logs' exchange.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Patterns to receive: words separated by dots, '*' for exactly one word, '#' for zero or more.
    #[arg(value_name = "BINDING_KEY")]
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
            "no BINDING_KEY given: name at least one to bind, e.g. `receive_logs_topic \"kern.*\" \"*.critical\"`"
        );
    }
    receive(
        &cli.amqp,
        "receive_logs_topic",
        "topic_logs",
        ExchangeKind::Topic,
        &cli.binding_keys,
        LineFormat::RoutingKeyAndBody,
    )
    .await
}

//! Tutorial 5's `emit_log_topic.py`: a log line with a dotted topic, to `topic_logs`.
//!
//! ```text
//! cargo run -p tutorials --bin emit_log_topic -- kern.critical "A critical kernel error"
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::{args::key_and_message, exchange};

/// Send a log message to the receivers whose pattern matches its topic ('topic_logs').
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// ROUTING_KEY MESSAGE...: a key such as kern.critical, then the message [default: anonymous.info Hello World!]
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
    let (routing_key, message) = key_and_message(&cli.words, "anonymous.info", "Hello World!");
    exchange::emit(
        &cli.amqp,
        "emit_log_topic",
        "topic_logs",
        ExchangeKind::Topic,
        &routing_key,
        &message,
    )
    .await?;
    shared::cli::print_line(format_args!(" [x] Sent {routing_key}:{message}"))?;
    Ok(())
}

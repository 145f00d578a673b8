//! Tutorial 4's `emit_log_direct.py`: a log line with a severity, to `direct_logs`.
//!
//! ```text
//! cargo run -p tutorials --bin emit_log_direct -- error "Run. Run. Or it will explode."
//! ```

use std::process::ExitCode;

use clap::Parser;
use lapin::ExchangeKind;
use shared::{AmqpSettings, logging, settings::LogSettings};
use tutorials::{args::key_and_message, exchange};

/// Send a log message to the receivers of its severity ('direct_logs' exchange).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// SEVERITY MESSAGE...: the severity is the routing key [default: info Hello World!]
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
    let (severity, message) = key_and_message(&cli.words, "info", "Hello World!");
    exchange::emit(
        &cli.amqp,
        "emit_log_direct",
        "direct_logs",
        ExchangeKind::Direct,
        &severity,
        &message,
    )
    .await?;
    shared::cli::print_line(format_args!(" [x] Sent {severity}:{message}"))?;
    Ok(())
}

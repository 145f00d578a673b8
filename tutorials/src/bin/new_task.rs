//! Tutorial 2's `new_task.py`: send one task to the durable `task_queue`.
//!
//! ```text
//! cargo run -p tutorials --bin new_task -- First message.
//! cargo run -p tutorials --bin new_task -- Third message...   # three seconds of work
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::{
    AmqpError, AmqpSettings, cli::print_line, connect_amqp, logging, settings::LogSettings,
};
use tutorials::{args::message_or, exchange, work};

/// Send a task to 'task_queue'; each '.' in it is one second of work.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The task: all words joined by spaces [default: Hello World!]
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
    let connection = connect_amqp(&cli.amqp, "new_task").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    shared::declare_queue(&channel, &work::task_queue()).await?;
    let message = message_or(&cli.words, "Hello World!");
    // Persistent, to the default exchange, which routes by queue name.
    exchange::publish_one(
        &channel,
        "",
        work::TASK_QUEUE,
        message.as_bytes(),
        exchange::persistent(),
    )
    .await?;
    print_line(format_args!(" [x] Sent {message}"))?;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

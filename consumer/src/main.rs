//! `cargo run -p consumer` — the blog's `python rabbit_customer.py`.
//!
//! Run with
//!
//! ```text
//! cargo run -p consumer                          # print every message in 'rabbit' until Ctrl-C
//! cargo run -p consumer -- --auto-ack            # the blog's auto_ack=True (can lose messages)
//! cargo run -p consumer -- --count 10 --queue q  # stop after 10 messages
//! cargo run --release -p consumer -- --count 1000000 --queue bench --durable > /dev/null
//! ```

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use consumer::{AckMode, ConsumerConfig};
use shared::{AmqpSettings, QueueSpec, QueueType, Shutdown, logging, settings::LogSettings};

/// Print every message of a RabbitMQ queue, acking each one after it is printed.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Queue to declare and consume from.
    #[arg(long, env = "QUEUE", default_value = "rabbit", value_parser = shared::settings::queue_name)]
    queue: String,

    /// Declare the queue durable (it must match how the producer declared it).
    #[arg(long)]
    durable: bool,

    /// Queue type: classic (the blog's) or quorum (replicated in a cluster,
    /// always durable). Producer and consumer must agree.
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    queue_type: QueueType,

    /// The blog's auto_ack=True: no acks, messages in flight are lost on a crash.
    #[arg(long)]
    auto_ack: bool,

    /// Unacked messages RabbitMQ may push to this consumer at once (basic_qos).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,

    /// Exit (status 0) after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

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
    let config = ConsumerConfig {
        amqp: cli.amqp,
        queue: QueueSpec::new(&cli.queue)
            .durable(cli.durable)
            .queue_type(cli.queue_type),
        ack_mode: if cli.auto_ack {
            AckMode::Auto
        } else {
            AckMode::AfterPrint
        },
        prefetch: cli.prefetch,
        limit: cli.count,
    };
    // Buffered: the consumer flushes once per batch, before it acks the batch.
    let stdout = tokio::io::BufWriter::with_capacity(64 * 1024, tokio::io::stdout());
    let report = consumer::run(config, stdout, async move {
        shutdown.recv().await;
    })
    .await?;
    if cli.count.is_some() {
        // The summary goes to stderr: stdout holds exactly the messages.
        let _ = writeln!(
            std::io::stderr(),
            "received {} messages from '{}' in {:.2} s: {:.0} msgs/s",
            report.received,
            cli.queue,
            report.elapsed.as_secs_f64(),
            report.rate()
        );
    }
    Ok(())
}

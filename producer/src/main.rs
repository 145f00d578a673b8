//! `cargo run -p producer` — the blog's `python rabbit_producer.py`.
//!
//! Run with
//!
//! ```text
//! cargo run -p producer                                  # one 'Hello RabbitMQ!' to 'rabbit'
//! cargo run -p producer -- --message hi --queue tasks    # your own text and queue
//! printf 'a\nb\n' | cargo run -p producer -- --message - # one message per stdin line
//! cargo run --release -p producer -- --count 1000000 --queue bench --durable
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use producer::{Messages, PROGRESS_THRESHOLD, ProducerConfig, PublishReport};
use shared::{
    AmqpSettings, QueueSpec, QueueType, Shutdown,
    cli::{StdoutError, print_line},
    logging,
    settings::LogSettings,
};

/// Publish messages to a RabbitMQ queue, each one confirmed by the broker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Queue to declare and publish to (through the default exchange).
    #[arg(long, env = "QUEUE", default_value = "rabbit", value_parser = shared::settings::queue_name)]
    queue: String,

    /// Message body; `-` publishes each line of standard input.
    #[arg(long, default_value = "Hello RabbitMQ!")]
    message: String,

    /// Publish this many numbered copies ("TEXT #1" …) instead of one message.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Durable queue and persistent messages: both survive a broker restart.
    #[arg(long)]
    durable: bool,

    /// Queue type: classic (the blog's) or quorum (replicated in a cluster,
    /// always durable). Producer and consumer must agree.
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    queue_type: QueueType,

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
    let messages = match (cli.message.as_str(), cli.count) {
        ("-", Some(_)) => anyhow::bail!("--count cannot be combined with --message - (stdin)"),
        ("-", None) => Messages::Lines,
        (text, Some(count)) => Messages::Numbered {
            text: text.to_owned(),
            count,
        },
        (text, None) => Messages::Single(text.to_owned()),
    };
    let single = match &messages {
        Messages::Single(text) => Some(text.clone()),
        _ => None,
    };
    let config = ProducerConfig {
        amqp: cli.amqp,
        queue: QueueSpec::new(&cli.queue)
            .durable(cli.durable)
            .queue_type(cli.queue_type),
        messages,
    };
    let report = producer::run(config, async move {
        shutdown.recv().await;
    })
    .await?;

    match single {
        // The blog's line, word for word ("started publishing message … to queue …").
        Some(text) => print_line(format_args!(
            "开始向 '{}' 队列中发布消息 '{text}'",
            cli.queue
        ))?,
        None => print_summary(&cli.queue, &report, cli.count)?,
    }
    if report.interrupted {
        anyhow::bail!("interrupted after {} confirmed messages", report.published);
    }
    Ok(())
}

fn print_summary(
    queue: &str,
    report: &PublishReport,
    count: Option<u64>,
) -> Result<(), StdoutError> {
    let PublishReport {
        published, elapsed, ..
    } = report;
    if count.is_some_and(|count| count >= PROGRESS_THRESHOLD) {
        print_line(format_args!(
            "published {published} messages to '{queue}' in {:.2} s: {:.0} msgs/s (all confirmed)",
            elapsed.as_secs_f64(),
            report.rate()
        ))
    } else {
        print_line(format_args!(
            "published {published} messages to '{queue}' (all confirmed)"
        ))
    }
}

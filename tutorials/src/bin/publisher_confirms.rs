//! Tutorial 7, publisher confirms (`PublisherConfirms.java` in the official
//! set): time the three strategies side by side.
//!
//! ```text
//! cargo run --release -p tutorials --bin publisher_confirms            # 50,000 messages each
//! cargo run --release -p tutorials --bin publisher_confirms -- 5000
//! ```

use std::process::ExitCode;

use clap::Parser;
use shared::{AmqpSettings, cli::print_line, connect_amqp, logging, settings::LogSettings};
use tutorials::confirms::{Strategy, time_strategy};

/// Publish N messages with each confirm strategy and print how long each took.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Messages per strategy.
    #[arg(default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    messages: u32,

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
    let connection = std::sync::Arc::new(connect_amqp(&cli.amqp, "publisher_confirms").await?);
    let count = usize::try_from(cli.messages)?;
    for strategy in Strategy::ALL {
        let elapsed = time_strategy(&connection, strategy, count).await?;
        print_line(format_args!(
            "Published {} messages {} in {} ms",
            thousands(u128::from(cli.messages)),
            strategy.describe(),
            thousands(elapsed.as_millis())
        ))?;
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

/// `50000` → `50,000`, as Java's `%,d` prints it.
fn thousands(number: u128) -> String {
    let digits = number.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

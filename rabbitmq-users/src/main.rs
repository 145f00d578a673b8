//! `cargo run -p rabbitmq-users` — the blog's `sudo rabbitmqctl` user commands.
//!
//! Run with
//!
//! ```text
//! cargo run -p rabbitmq-users -- add-user admin              # prompts for the password
//! cargo run -p rabbitmq-users -- set-user-tags admin administrator
//! cargo run -p rabbitmq-users -- set-permissions -p / admin ".*" ".*" ".*"
//! cargo run -p rabbitmq-users -- list-users
//! cargo run -p rabbitmq-users -- list-permissions -p /
//! cargo run -p rabbitmq-users -- delete-user admin
//! ```

use std::process::ExitCode;

use clap::Parser;
use rabbitmq_users::{Admin, ApiSettings, Command, password};
use shared::{logging, settings::LogSettings};

/// Manage RabbitMQ users through the management HTTP API, like rabbitmqctl.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    api: ApiSettings,

    #[command(flatten)]
    log: LogSettings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = logging::init(cli.log.level);
    // rabbitmq_http_client logs every request body at TRACE through the `log`
    // crate, and the body of add-user / set-user-tags is the password hash.
    // Cap `log` records at DEBUG so that not even RUST_LOG=trace shows it.
    log::set_max_level(log::max_level().min(log::LevelFilter::Debug));
    shared::cli::exit_code(run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin = Admin::new(&cli.api)?;
    let mut stdout = std::io::stdout();
    rabbitmq_users::run(&admin, cli.command, &mut stdout, password::ask_on_terminal).await?;
    Ok(())
}

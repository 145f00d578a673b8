//! Tutorial 6's `rpc_client.py`: ask an RPC server for `fib(30)`.
//!
//! ```text
//! cargo run -p tutorials --bin rpc_client                       # the tutorial: fib(30)
//! cargo run -p tutorials --bin rpc_client -- 10 --timeout 5     # fib(10), give up after 5 s
//! cargo run --release -p tutorials --bin rpc_client -- 1 --calls 20000 --concurrency 64
//! ```

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use shared::{
    AmqpSettings, Seconds, cli::print_line, connect_amqp, logging, settings::LogSettings,
};
use tutorials::rpc::{MAX_FIB_INPUT, ReplyQueue, RpcClient, fib};

/// Call the Fibonacci RPC server through 'rpc_queue'.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Which Fibonacci number to ask for.
    #[arg(default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=MAX_FIB_INPUT))]
    n: u64,

    /// Seconds to wait for each reply before giving up.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = Seconds::between(0.001, 86_400.0))]
    timeout: Duration,

    /// Receive replies through direct reply-to (amq.rabbitmq.reply-to) instead of a callback queue.
    #[arg(long)]
    direct_reply_to: bool,

    /// Make this many calls (all sharing one callback queue) and print the rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    calls: u64,

    /// Calls in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

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
    let connection = connect_amqp(&cli.amqp, "rpc_client").await?;
    let reply_queue = if cli.direct_reply_to {
        ReplyQueue::DirectReplyTo
    } else {
        ReplyQueue::Exclusive
    };
    let client = Arc::new(RpcClient::open(&connection, reply_queue, cli.timeout).await?);
    let n = cli.n;
    if cli.calls == 1 {
        print_line(format_args!(" [x] Requesting fib({n})"))?;
        let response = client.call(n).await?;
        print_line(format_args!(" [.] Got {response}"))?;
    } else {
        print_line(format_args!(
            " [x] Requesting fib({n}) {} times, {} at a time",
            cli.calls, cli.concurrency
        ))?;
        let started = Instant::now();
        let response = call_many(&client, n, cli.calls, cli.concurrency).await?;
        let seconds = started.elapsed().as_secs_f64();
        print_line(format_args!(
            " [.] Got {response} {} times in {seconds:.2} s: {:.0} calls/s",
            cli.calls,
            cli.calls as f64 / seconds.max(1e-9)
        ))?;
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

/// `calls` calls of `fib(n)`, `concurrency` at a time over the one client;
/// every answer is checked against our own `fib`.
async fn call_many(
    client: &Arc<RpcClient>,
    n: u64,
    calls: u64,
    concurrency: u16,
) -> anyhow::Result<u64> {
    let expected = fib(n).context("n is checked by the argument parser")?;
    let next_call = Arc::new(AtomicU64::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next_call) = (Arc::clone(client), Arc::clone(&next_call));
        callers.spawn(async move {
            while next_call.fetch_add(1, Ordering::Relaxed) < calls {
                let response = client.call(n).await?;
                if response != expected {
                    anyhow::bail!("the server answered fib({n}) = {response}; it is {expected}");
                }
            }
            Ok(())
        });
    }
    while let Some(finished) = callers.join_next().await {
        finished.context("a caller task failed")??;
    }
    Ok(expected)
}

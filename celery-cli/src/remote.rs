//! `inspect`, `control` and `status`: Celery's remote-control commands
//! (`celery -A celery_tasks.main inspect ping`), for our workers and Python
//! ones alike, with Celery's output.
//!
//! Each broadcasts one request and prints every reply that came within
//! `--timeout` (per reply, as Celery waits), node by node:
//!
//! ```text
//! ->  celery@host: OK
//!         pong
//!
//! 1 node online.
//! ```
//!
//! No reply at all is an error with Celery's words and exit status 69.

use std::time::Duration;

use celery_core::{
    broker::{Transport, amqp::Amqp, redis::Redis},
    config::Settings,
    control::{Request, client, clock::LamportClock},
};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use shared::{Seconds, cli::print_line};
use thiserror::Error;

use crate::args::{BrokerArgs, amqp};

/// `--timeout`: Celery's default is one second per reply.
const REPLY_TIMEOUT: Seconds = Seconds::between(0.05, 3600.0);

/// The exit status Celery uses when no node replied (`EX_UNAVAILABLE`).
pub const NO_REPLIES_EXIT: u8 = 69;

#[derive(Debug, Error)]
#[error("No nodes replied within time constraint")]
pub struct NoNodesReplied;

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(crate) enum InspectMethod {
    Ping,
    Stats,
    Active,
    Reserved,
    Scheduled,
    Revoked,
    Registered,
    ActiveQueues,
    Conf,
}

#[derive(Args, Debug)]
pub(crate) struct Target {
    #[command(flatten)]
    broker: BrokerArgs,

    /// Only these nodes, comma-separated (Celery's -d / --destination).
    #[arg(short = 'd', long, value_delimiter = ',')]
    destination: Vec<String>,

    /// Seconds to wait for each reply.
    #[arg(short = 't', long, value_name = "SECONDS", default_value = "1", value_parser = REPLY_TIMEOUT)]
    timeout: Duration,

    /// Print the replies as one JSON object, node → reply.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// What to ask.
    method: InspectMethod,

    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ControlCommand {
    /// Revoke tasks: workers refuse them (and with --terminate stop them if running).
    Revoke {
        #[arg(required = true)]
        task_ids: Vec<String>,
        /// Also stop the task if it is running.
        #[arg(long)]
        terminate: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Turn task events on.
    EnableEvents {
        #[command(flatten)]
        target: Target,
    },
    /// Turn task events off.
    DisableEvents {
        #[command(flatten)]
        target: Target,
    },
    /// Warm-shut the workers down (they do not reply).
    Shutdown {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn inspect(args: InspectArgs, settings: Settings) -> anyhow::Result<()> {
    let method = args
        .method
        .to_possible_value()
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default();
    let arguments = match args.method {
        // Flower asks for `active` with safe=True; the CLI does not.
        InspectMethod::Active => client::arguments([("safe", json!(false))]),
        _ => Map::new(),
    };
    let replies = ask(&args.target, settings, Request::new(&method, arguments)).await?;
    print_replies(&args.target, &replies, |reply| match args.method {
        InspectMethod::Ping => ok_text(reply),
        InspectMethod::Registered | InspectMethod::Revoked => list(reply),
        InspectMethod::Active | InspectMethod::Reserved | InspectMethod::Scheduled => {
            match reply.as_array() {
                Some(items) if items.is_empty() => vec!["- empty -".to_owned()],
                _ => list(reply),
            }
        }
        _ => pretty(reply),
    })?;
    if matches!(args.method, InspectMethod::Ping) && !args.target.json {
        print_line("")?;
        print_line(nodes_online(replies.len()))?;
    }
    Ok(())
}

pub(crate) async fn status(args: StatusArgs, settings: Settings) -> anyhow::Result<()> {
    let replies = ask(&args.target, settings, Request::new("ping", Map::new())).await?;
    print_replies(&args.target, &replies, |_| Vec::new())?;
    if !args.target.json {
        print_line("")?;
        print_line(nodes_online(replies.len()))?;
    }
    Ok(())
}

pub(crate) async fn control(command: ControlCommand, settings: Settings) -> anyhow::Result<()> {
    let (target, request) = match command {
        ControlCommand::Revoke {
            task_ids,
            terminate,
            target,
        } => {
            let arguments = client::arguments([
                ("task_id", json!(task_ids)),
                ("terminate", json!(terminate)),
                ("signal", json!("SIGTERM")),
            ]);
            (target, Request::new("revoke", arguments))
        }
        ControlCommand::EnableEvents { target } => {
            (target, Request::new("enable_events", Map::new()))
        }
        ControlCommand::DisableEvents { target } => {
            (target, Request::new("disable_events", Map::new()))
        }
        ControlCommand::Shutdown { target } => (target, Request::new("shutdown", Map::new())),
    };
    let replies = ask(&target, settings, request).await?;
    print_replies(&target, &replies, ok_text)?;
    Ok(())
}

/// Broadcasts `request` to the target's nodes and gathers the replies.
async fn ask(
    target: &Target,
    mut settings: Settings,
    request: Request,
) -> anyhow::Result<Vec<client::Reply>> {
    target.broker.apply(&mut settings);
    let url = &settings.broker_url;
    let settings = amqp(&settings, None);
    let request = request.to(target.destination.clone());
    let clock = LamportClock::default();
    let replies = match Transport::of(url)? {
        Transport::Redis => {
            client::broadcast::<Redis>(url, settings, request, target.timeout, &clock).await?
        }
        Transport::Amqp => {
            client::broadcast::<Amqp>(url, settings, request, target.timeout, &clock).await?
        }
    };
    if replies.is_empty() {
        return Err(NoNodesReplied.into());
    }
    Ok(replies)
}

/// `->  node: OK` and the reply's lines under it, or `->  node: ERROR`.
fn print_replies(
    target: &Target,
    replies: &[client::Reply],
    lines: impl Fn(&Value) -> Vec<String>,
) -> anyhow::Result<()> {
    if target.json {
        let by_node: Map<String, Value> = replies.iter().cloned().collect();
        print_line(Value::Object(by_node))?;
        return Ok(());
    }
    for (node, reply) in replies {
        match reply.get("error") {
            Some(error) => {
                print_line(format!("->  {node}: ERROR"))?;
                print_line(format!("        {}", error.as_str().unwrap_or_default()))?;
            }
            None => {
                print_line(format!("->  {node}: OK"))?;
                for line in lines(reply) {
                    print_line(format!("        {line}"))?;
                }
            }
        }
    }
    Ok(())
}

fn nodes_online(count: usize) -> String {
    match count {
        1 => "1 node online.".to_owned(),
        n => format!("{n} nodes online."),
    }
}

/// `{"ok": "pong"}` → `pong`.
fn ok_text(reply: &Value) -> Vec<String> {
    match reply.get("ok").and_then(Value::as_str) {
        Some(text) => vec![text.to_owned()],
        None => pretty(reply),
    }
}

/// A list, one `* item` per line.
fn list(reply: &Value) -> Vec<String> {
    match reply.as_array() {
        Some(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => format!("* {text}"),
                other => format!("* {other}"),
            })
            .collect(),
        None => pretty(reply),
    }
}

fn pretty(reply: &Value) -> Vec<String> {
    serde_json::to_string_pretty(reply)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

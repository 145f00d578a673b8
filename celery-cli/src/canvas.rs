//! `send --canvas 'add(2, 2) | mul(8)'`: a chain, a group or a chord from
//! the command line, to Rust or Python workers alike, as
//! `chain(add.s(2, 2), mul.s(8)).apply_async()` sends it from Python.
//!
//! The canvas is frozen first (every task gets its id), so the result can
//! be subscribed to before anything is sent; a chord's size goes to the
//! result backend before its header does. Prints the id to wait on (a
//! group's: each member's), and with `--wait` the result.

use std::time::Duration;

use anyhow::{Context, bail};
use celery_core::{
    backend::ResultBackend,
    broker::{AnyProducer, Producer},
    canvas::{self, Lineage, expression},
    redis_connection::RedisOptions,
};
use shared::{AmqpSettings, cli::print_line};

use crate::result::print_result;

/// What `send --canvas` needs from the command line.
#[derive(Debug)]
pub(crate) struct CanvasSend<'a> {
    pub expression: &'a str,
    pub broker: &'a str,
    pub amqp: AmqpSettings,
    pub result_backend: Option<&'a str>,
    /// How to open the result backend.
    pub redis: RedisOptions,
    /// Where steps go that name no queue (`--queue`).
    pub queue: &'a str,
    /// Seconds to wait, with `--wait`.
    pub wait: Option<Duration>,
}

pub(crate) async fn send(request: CanvasSend<'_>) -> anyhow::Result<()> {
    let mut signature = expression::parse(request.expression)?;
    let awaited = canvas::freeze(&mut signature)?;
    let plan = canvas::apply(signature, &[], &Lineage::default())?;
    let backend = match request.result_backend {
        Some(url) => Some(ResultBackend::connect(url, &request.redis).await?),
        None if !plan.chord_sizes.is_empty() || request.wait.is_some() => bail!(
            "a chord, and --wait, need a result backend: pass --result-backend redis://127.0.0.1:6379/8 (or set CELERY_RESULT_BACKEND)"
        ),
        None => None,
    };
    // Subscribe before sending, as Celery does, so a fast result is not missed.
    let mut waiters = Vec::new();
    if let (Some(backend), Some(_)) = (&backend, request.wait) {
        for id in awaited.ids() {
            waiters.push(backend.subscribe(id).await?);
        }
    }
    if let Some(backend) = &backend {
        for (group_id, size) in &plan.chord_sizes {
            backend.set_chord_size(group_id, *size).await?;
        }
    }
    let mut producer = AnyProducer::connect(request.broker, request.amqp).await?;
    for outgoing in &plan.messages {
        let queue = outgoing.queue.as_deref().unwrap_or(request.queue);
        producer
            .send(&outgoing.message, queue)
            .await
            .with_context(|| format!("sending task {}", outgoing.message.headers.task))?;
    }
    producer.flush().await?;
    producer.close().await;
    print_line(awaited.ids().join(" "))?;
    if let Some(timeout) = request.wait {
        for waiter in waiters {
            print_result(&waiter.wait(timeout).await?)?;
        }
    }
    Ok(())
}

//! Tutorial 7, publisher confirms: three ways to wait for the broker's "got it".
//!
//! A confirm is the broker telling the publisher it has taken a message
//! (for a durable queue: written it to disk). The official tutorial (Java)
//! compares three strategies, and so do we, timing each on its own queue:
//!
//! * **one at a time**: publish, wait for its confirm, publish the next. One
//!   network round trip per message; simple and slow. It is the only one
//!   pika's `BlockingChannel` offers, and what the Python figure measures.
//! * **in batches**: publish [`BATCH_SIZE`] messages, then wait for all of
//!   their confirms. Far fewer waits; but when a confirm is negative you only
//!   know that something in the batch failed.
//! * **asynchronously**: keep publishing, and settle confirms as they come.
//!   This is `shared`'s [`ConfirmedPublisher`], which the blog's producer
//!   uses: a window of unconfirmed messages that are sent again if the
//!   connection drops before they are confirmed.
//!
//! Each strategy gets a fresh exclusive, server-named queue, so nothing is
//! left behind and nothing else is disturbed. (The Java tutorial declares
//! a non-exclusive, non-durable queue, which RabbitMQ 4.3+ refuses.)

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use shared::{AmqpError, ConfirmedPublisher, Outgoing};

/// Messages per batch in the batch strategy, as in the Java tutorial.
pub const BATCH_SIZE: usize = 100;

/// The window of the asynchronous strategy: unconfirmed messages at most.
pub const ASYNC_WINDOW: usize = 10_000;

/// The three strategies, in the tutorial's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Wait for each message's confirm before sending the next.
    OneAtATime,
    /// Send [`BATCH_SIZE`] messages, then wait for all their confirms.
    InBatches,
    /// Keep sending; settle confirms as they arrive ([`ASYNC_WINDOW`] at most open).
    Asynchronously,
}

impl Strategy {
    /// All three, in the order the tutorial (and our output) lists them.
    pub const ALL: [Strategy; 3] = [
        Strategy::OneAtATime,
        Strategy::InBatches,
        Strategy::Asynchronously,
    ];

    /// The end of the Java tutorial's line: "Published 50,000 messages …".
    pub fn describe(self) -> &'static str {
        match self {
            Strategy::OneAtATime => "individually",
            Strategy::InBatches => "in batch",
            Strategy::Asynchronously => "and handled confirms asynchronously",
        }
    }
}

/// Publishes `count` messages with `strategy` into a fresh queue and
/// returns how long it took, every message confirmed.
pub async fn time_strategy(
    connection: &Arc<Connection>,
    strategy: Strategy,
    count: usize,
) -> Result<Duration, AmqpError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("declaring the queue"))?
        .name()
        .to_string();
    let started = Instant::now();
    match strategy {
        Strategy::OneAtATime => one_at_a_time(&channel, &queue, count).await?,
        Strategy::InBatches => in_batches(&channel, &queue, count).await?,
        Strategy::Asynchronously => asynchronously(connection, &queue, count).await?,
    }
    let elapsed = started.elapsed();
    // Deleted now rather than with the connection: three strategies' worth
    // of messages would otherwise sit in memory until the end.
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .map_err(AmqpError::broker("deleting the queue"))?;
    let _ = channel.close(200, "done".into()).await;
    Ok(elapsed)
}

fn body(i: usize) -> Vec<u8> {
    i.to_string().into_bytes()
}

async fn confirming_channel(channel: &Channel) -> Result<(), AmqpError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))
}

async fn one_at_a_time(channel: &Channel, queue: &str, count: usize) -> Result<(), AmqpError> {
    confirming_channel(channel).await?;
    for i in 0..count {
        let confirm = publish(channel, queue, i).await?;
        settle(confirm.await, queue)?;
    }
    Ok(())
}

async fn in_batches(channel: &Channel, queue: &str, count: usize) -> Result<(), AmqpError> {
    confirming_channel(channel).await?;
    let mut batch = Vec::with_capacity(BATCH_SIZE);
    for i in 0..count {
        batch.push(publish(channel, queue, i).await?);
        if batch.len() == BATCH_SIZE || i + 1 == count {
            for confirm in batch.drain(..) {
                settle(confirm.await, queue)?;
            }
        }
    }
    Ok(())
}

async fn asynchronously(
    connection: &Arc<Connection>,
    queue: &str,
    count: usize,
) -> Result<(), AmqpError> {
    let mut publisher = ConfirmedPublisher::open(connection, ASYNC_WINDOW).await?;
    for i in 0..count {
        publisher
            .publish(Outgoing::to_queue(
                queue,
                body(i),
                BasicProperties::default(),
            ))
            .await?;
    }
    publisher.flush().await
}

async fn publish(
    channel: &Channel,
    queue: &str,
    i: usize,
) -> Result<lapin::PublisherConfirm, AmqpError> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body(i),
            BasicProperties::default(),
        )
        .await
        .map_err(AmqpError::broker("publishing"))
}

fn settle(confirmation: Result<Confirmation, lapin::Error>, queue: &str) -> Result<(), AmqpError> {
    match confirmation.map_err(AmqpError::broker("waiting for a confirm"))? {
        Confirmation::Nack(_) => Err(AmqpError::Nacked {
            routing_key: queue.to_owned(),
        }),
        _ => Ok(()),
    }
}

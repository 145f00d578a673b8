//! The blog's consumer, `rabbit_customer.py`, as a library.
//!
//! ```python
//! channel.queue_declare(queue='rabbit')
//! def callback(ch, method, properties, body):
//!     print(body)
//! channel.basic_consume(queue='rabbit', on_message_callback=callback, auto_ack=True)
//! channel.start_consuming()
//! ```
//!
//! [`run`] declares the same queue and prints every body on its own line
//! until stopped. What it changes, and why:
//!
//! * **Manual acks by default.** With `auto_ack=True` RabbitMQ forgets a
//!   message the moment it is *sent*. Kill the consumer while 100 prefetched
//!   messages sit in its socket buffer and those 100 are gone. Here a message
//!   is acked only after its line has been written and flushed to stdout; if we
//!   die first, RabbitMQ delivers it again. `--auto-ack` restores the blog's
//!   behaviour, for comparison.
//! * **Prefetch** (`basic_qos`) bounds how many unacked messages the broker
//!   pushes at us, so a slow consumer does not hoard the queue and a second
//!   consumer gets its share.
//! * **Batched acks.** Acking each message costs a frame each; we print every
//!   delivery that is already waiting, flush once, then ack them all with one
//!   `multiple = true` ack. Nothing is acked before it is printed.
//! * **Recovery.** If the connection drops, lapin reconnects and restores the
//!   queue, QoS and consumer; we carry on. Unacked messages come back from
//!   the broker, so a message may be printed twice, never zero times.
//! * **Graceful stop.** Ctrl-C or SIGTERM stops taking deliveries, finishes and
//!   acks what is in hand, cancels the consumer and closes the channel — which
//!   hands every prefetched-but-unprinted message back to the queue.

mod body;

use std::time::{Duration, Instant};

use futures_lite::{StreamExt, future::poll_once};
use lapin::{
    Acker, Channel, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::{AmqpError, AmqpSettings, QueueSpec, connect_amqp};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};

pub use body::printable_body;

/// When a message counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Ack after the body is printed (the default; at-least-once).
    AfterPrint,
    /// The blog's `auto_ack=True`: the broker forgets a message as it sends it.
    Auto,
}

/// Everything [`run`] needs.
#[derive(Debug)]
pub struct ConsumerConfig {
    pub amqp: AmqpSettings,
    pub queue: QueueSpec,
    pub ack_mode: AckMode,
    /// Unacked messages the broker may push to us at once (`basic_qos`).
    pub prefetch: u16,
    /// Stop after this many messages.
    pub limit: Option<u64>,
}

/// What was consumed, for the summary line and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeReport {
    pub received: u64,
    /// From the first delivery to the last ack.
    pub elapsed: Duration,
}

impl ConsumeReport {
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Consumes `config.queue`, writing one line per message to `out`, until
/// `stop` resolves, `config.limit` messages were handled, or an error that
/// recovery cannot repair.
pub async fn run(
    config: ConsumerConfig,
    out: impl AsyncWrite + Unpin,
    stop: impl Future<Output = ()>,
) -> Result<ConsumeReport, AmqpError> {
    let connection = connect_amqp(&config.amqp, "consumer").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let auto_ack = config.ack_mode == AckMode::Auto;
    if !auto_ack {
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(AmqpError::broker("setting the prefetch count"))?;
    }
    shared::declare_queue(&channel, &config.queue).await?;
    let consumer = channel
        .basic_consume(
            config.queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: auto_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("starting the consumer"))?;
    info!(
        "Waiting for messages in '{}'. To exit press CTRL+C",
        config.queue.name
    );

    let mut session = Session {
        channel: &channel,
        consumer,
        out,
        // Ack in batches of at most half the prefetch window, so the broker
        // always has room to send the next messages while we ack these.
        max_batch: if auto_ack {
            1024
        } else {
            (usize::from(config.prefetch) / 2).max(1)
        },
        auto_ack,
        limit: config.limit.unwrap_or(u64::MAX),
        received: 0,
        first_delivery: None,
    };
    let outcome = session.consume(stop).await;
    let report = session.report();
    let tag = session.consumer.tag();

    // Stop deliveries, then close the channel: RabbitMQ puts every message it
    // sent us that we did not ack back in the queue, in order.
    let closing = async {
        channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await?;
        channel.close(200, "bye".into()).await?;
        connection.close(200, "bye".into()).await
    };
    let closed = closing.await;
    outcome?;
    closed.map_err(AmqpError::broker("closing the connection"))?;
    Ok(report)
}

/// The state of one consume loop.
struct Session<'a, W> {
    channel: &'a Channel,
    consumer: Consumer,
    out: W,
    max_batch: usize,
    auto_ack: bool,
    limit: u64,
    received: u64,
    first_delivery: Option<Instant>,
}

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    async fn consume(&mut self, stop: impl Future<Output = ()>) -> Result<(), AmqpError> {
        tokio::pin!(stop);
        while self.received < self.limit {
            let next = tokio::select! {
                // `biased`: a pending stop wins over the next delivery.
                biased;
                () = &mut stop => {
                    info!("stopping: every printed message is acked, the rest go back to the queue");
                    return Ok(());
                }
                next = self.consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => self.handle_batch(delivery).await?,
                Some(Err(error)) => self.recover(error).await?,
                None => {
                    return Err(AmqpError::ConsumerCancelled {
                        queue: self.consumer.queue().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Prints `first` and every delivery already waiting behind it, flushes
    /// stdout once, then acks them all at once.
    async fn handle_batch(&mut self, first: Delivery) -> Result<(), AmqpError> {
        self.first_delivery.get_or_insert_with(Instant::now);
        let mut last_acker = self.print(first).await?;
        let mut batch = 1;
        while batch < self.max_batch && self.received < self.limit {
            // Only what is ready now: never wait for more with messages unacked.
            match poll_once(self.consumer.next()).await {
                Some(Some(Ok(delivery))) => {
                    last_acker = self.print(delivery).await?;
                    batch += 1;
                }
                // An error, the end, or nothing ready: settle this batch first;
                // the error comes back from the stream on the next `next()`.
                _ => break,
            }
        }
        self.out
            .flush()
            .await
            .map_err(|error| AmqpError::Output(error.to_string()))?;
        if !self.auto_ack {
            ack_through(&last_acker, batch).await;
        }
        Ok(())
    }

    async fn print(&mut self, delivery: Delivery) -> Result<Acker, AmqpError> {
        let mut line = printable_body(&delivery.data).into_owned();
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .await
            .map_err(|error| AmqpError::Output(error.to_string()))?;
        self.received += 1;
        Ok(delivery.acker)
    }

    async fn recover(&mut self, error: lapin::Error) -> Result<(), AmqpError> {
        // The loss itself is logged once, by the connection's watch.
        debug!(%error, "the consumer stream failed; waiting for lapin to recover");
        self.channel
            .wait_for_recovery(error)
            .await
            .map_err(AmqpError::broker("recovering the connection"))?;
        info!("connection recovered; consuming again");
        Ok(())
    }

    fn report(&self) -> ConsumeReport {
        ConsumeReport {
            received: self.received,
            elapsed: self
                .first_delivery
                .map(|first| first.elapsed())
                .unwrap_or_default(),
        }
    }
}

/// Acks every delivery up to and including `acker`'s (`multiple = true`).
///
/// If the connection died, lapin has already marked the acker unusable and
/// nothing is sent: the broker will deliver these messages again after
/// recovery, so we log and carry on rather than fail.
async fn ack_through(acker: &Acker, batch: usize) {
    match acker.ack(BasicAckOptions { multiple: true }).await {
        Ok(true) => {}
        // The loss itself was logged (as a warning) by the connection's watch.
        Ok(false) | Err(_) => info!(
            "{batch} printed message(s) could not be acked before the connection was lost; RabbitMQ will deliver them again"
        ),
    }
}

//! Publishing with publisher confirms, without waiting for each one.
//!
//! The blog's `channel.basic_publish(...)` returns as soon as the bytes are on
//! the socket. If the broker then drops the message (it crashed, the queue
//! was deleted, the routing key matches nothing), the producer never knows:
//! the message is silently lost. Publisher confirms fix that — the broker
//! acknowledges every message once it has taken responsibility for it — and
//! `mandatory` makes an unroutable message come back instead of vanishing.
//!
//! Waiting for each confirm before sending the next message (what pika's
//! `BlockingConnection` does) costs one network round trip per message. So
//! [`ConfirmedPublisher`] keeps a window of messages in flight: it sends up to
//! `max_in_flight` of them, then waits for the oldest confirm before sending
//! more. Messages stay in the window until confirmed, which is what makes the
//! connection-loss case safe: after lapin recovers the connection, everything
//! that was not confirmed is published again (at-least-once delivery).
//!
//! A quorum queue nacks while it elects a new leader, so a nack is first
//! taken as "not now" and the message is sent again after a pause. On
//! RabbitMQ 3.10 a channel may go on being nacked long after the election
//! (25 s measured, while a fresh channel was acked at once: the channel
//! keeps its own view of the queue's leader), so a nack that persists moves
//! the publisher to a fresh channel.

use std::{collections::VecDeque, sync::Arc};

use tokio::time::Instant;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use tracing::{debug, info};

use crate::error::{AmqpError, is_connection_error};

/// One message to publish: where it goes and what it carries.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Outgoing {
    /// A message for the default exchange `""`, which routes by queue name —
    /// the blog's `basic_publish(exchange='', routing_key='rabbit', ...)`.
    pub fn to_queue(queue: &str, body: impl Into<Vec<u8>>, properties: BasicProperties) -> Self {
        Self {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body: body.into(),
            properties,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    message: Outgoing,
    confirm: PublisherConfirm,
    /// How many times the broker nacked it already.
    nacks: u32,
    sent_at: Instant,
    /// The channel it was sent on, which will confirm it.
    channel: u16,
}

/// How often a nacked message is sent again before we give up on it. A
/// quorum queue nacks while it has no leader (its leader's node just died
/// and the others are electing one, which takes a second or two), so a nack
/// is first taken as "not now", then, after these, as "no".
const NACK_RETRIES: u32 = 8;
/// The pause before re-sending a nacked message, doubled each time (100 ms
/// to 6.4 s: 12.7 s in all, several leader elections' worth).
const NACK_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// From this retry on, a nacked message is sent on a fresh channel (after
/// 100 + 200 ms of nacks an election is usually over; see the module's
/// comment for why a channel can stay nacked after it).
const FRESH_CHANNEL_FROM_RETRY: u32 = 3;

/// A channel in confirm mode with a window of unconfirmed messages.
#[derive(Debug)]
pub struct ConfirmedPublisher {
    connection: Arc<Connection>,
    /// The channel publishing now.
    channel: Channel,
    /// The channel it was opened with. Never closed: lapin replays the
    /// declarations made on a channel when it recovers the connection.
    first: Channel,
    /// Channels left after persistent nacks, closed once none of their
    /// messages awaits a confirm.
    retired: Vec<Channel>,
    in_flight: VecDeque<InFlight>,
    max_in_flight: usize,
    /// When the last pause for a nack ended. A whole window is nacked at
    /// once when a queue loses its leader: the messages sent before the
    /// pause are sent again at once, only a later nack pauses again.
    resumed_at: Option<Instant>,
}

impl ConfirmedPublisher {
    /// Opens a channel on `connection` and turns on publisher confirms.
    pub async fn open(
        connection: &Arc<Connection>,
        max_in_flight: usize,
    ) -> Result<Self, AmqpError> {
        let channel = open_confirmed_channel(connection).await?;
        Ok(Self {
            connection: connection.clone(),
            first: channel.clone(),
            channel,
            retired: Vec::new(),
            in_flight: VecDeque::with_capacity(max_in_flight),
            max_in_flight: max_in_flight.max(1),
            resumed_at: None,
        })
    }

    /// The underlying channel, e.g. to declare the queue on it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends `message`, first waiting for old confirms if the window is full.
    ///
    /// Returning `Ok` means "sent"; call [`flush`](Self::flush) to know that
    /// everything sent so far was confirmed.
    pub async fn publish(&mut self, message: Outgoing) -> Result<(), AmqpError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_oldest().await?;
        }
        self.send(message, 0).await
    }

    /// Waits until every message sent so far is confirmed by the broker.
    pub async fn flush(&mut self) -> Result<(), AmqpError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Number of messages sent but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.in_flight.len()
    }

    async fn send(&mut self, message: Outgoing, nacks: u32) -> Result<(), AmqpError> {
        loop {
            let sent = self
                .channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    // mandatory: a message no queue receives comes back to us
                    // (basic.return) instead of being dropped by the broker.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties.clone(),
                )
                .await;
            match sent {
                Ok(confirm) => {
                    self.in_flight.push_back(InFlight {
                        message,
                        confirm,
                        nacks,
                        sent_at: Instant::now(),
                        channel: self.channel.id(),
                    });
                    return Ok(());
                }
                Err(error) => self.wait_for_recovery(error).await?,
            }
        }
    }

    async fn settle_oldest(&mut self) -> Result<(), AmqpError> {
        let Some(InFlight {
            message,
            confirm,
            nacks,
            sent_at,
            channel: _,
        }) = self.in_flight.pop_front()
        else {
            return Ok(());
        };
        let confirmation = confirm.await;
        self.close_retired_channels().await;
        match confirmation {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
                Err(AmqpError::Returned {
                    exchange: message.exchange,
                    routing_key: message.routing_key,
                    reply: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Ok(Confirmation::Nack(None)) if nacks < NACK_RETRIES => {
                // Not stored, so sending it again cannot duplicate it.
                let same_outage = self.resumed_at.is_some_and(|resumed| sent_at < resumed);
                if !same_outage {
                    let pause = NACK_BACKOFF * 2u32.pow(nacks);
                    info!(
                        "RabbitMQ nacked messages for '{}' (is the queue electing a leader?); sending them again in {pause:?} (retry {} of {NACK_RETRIES})",
                        message.routing_key,
                        nacks + 1
                    );
                    tokio::time::sleep(pause).await;
                    if nacks + 1 >= FRESH_CHANNEL_FROM_RETRY {
                        self.move_to_a_fresh_channel().await;
                    }
                    self.resumed_at = Some(Instant::now());
                }
                self.send(message, nacks + 1).await
            }
            Ok(Confirmation::Nack(None)) => Err(AmqpError::Nacked {
                routing_key: message.routing_key,
            }),
            Err(error) => {
                // The connection went away before the broker confirmed. We
                // cannot know whether it stored the message, so once lapin has
                // reconnected we send it — and every later unconfirmed one —
                // again. A consumer may see a duplicate; it will not see a gap.
                self.wait_for_recovery(error).await?;
                let unconfirmed: Vec<Outgoing> = std::iter::once(message)
                    .chain(self.in_flight.drain(..).map(|in_flight| in_flight.message))
                    .collect();
                info!(
                    "Publishing {} unconfirmed message(s) again after the reconnect",
                    unconfirmed.len()
                );
                for message in unconfirmed {
                    self.send(message, 0).await?;
                }
                Ok(())
            }
        }
    }

    /// Publishes from now on through a new channel; the current one is
    /// closed once its messages are confirmed (or nacked, and sent again).
    /// If no channel can be opened now (the connection is recovering), the
    /// current one is kept: its recovery is as fresh a start.
    async fn move_to_a_fresh_channel(&mut self) {
        let fresh = match open_confirmed_channel(&self.connection).await {
            Ok(fresh) => fresh,
            Err(error) => {
                debug!(%error, "no fresh channel for now; staying on this one");
                return;
            }
        };
        debug!(
            from = self.channel.id(),
            to = fresh.id(),
            "publishing on a fresh channel after persistent nacks"
        );
        let previous = std::mem::replace(&mut self.channel, fresh);
        if previous.id() != self.first.id() {
            self.retired.push(previous);
        }
    }

    async fn close_retired_channels(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let awaited: std::collections::HashSet<u16> = self
            .in_flight
            .iter()
            .map(|in_flight| in_flight.channel)
            .collect();
        let (done, waiting): (Vec<Channel>, Vec<Channel>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|channel| !awaited.contains(&channel.id()));
        self.retired = waiting;
        for channel in done {
            let _ = channel.close(200, "replaced after nacks".into()).await;
        }
    }

    async fn wait_for_recovery(&self, error: lapin::Error) -> Result<(), AmqpError> {
        if !is_connection_error(&error) && !error.is_amqp_hard_error() {
            return Err(AmqpError::Broker {
                action: "publishing",
                source: error,
            });
        }
        // The loss itself is logged once, by the connection's watch.
        debug!(%error, "publishing failed; waiting for lapin to recover the connection");
        self.channel
            .wait_for_recovery(error)
            .await
            .map_err(AmqpError::broker("recovering the connection"))
    }
}

/// Opens a channel on `connection` in confirm mode: every publish on it is
/// acked or nacked by the broker.
pub async fn open_confirmed_channel(connection: &Connection) -> Result<Channel, AmqpError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))?;
    Ok(channel)
}

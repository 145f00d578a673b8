//! The two brokers Celery's `broker_url` can name, behind one interface.
//!
//! ```python
//! # broker_url = 'amqp://guest:guest@xxx.xxx.xxx.xxx:5672'  # RabbitMQ
//! broker_url = 'redis://127.0.0.1/7'
//! ```
//!
//! As in Celery, the URL scheme picks the transport: `redis://`/`rediss://`
//! ([`redis::Redis`]) or `amqp://`/`amqps://` ([`amqp::Amqp`]). Each is a
//! [`Broker`] with the same two halves:
//!
//! * a [`Producer`] that sends task messages (the `delay()` side, and the
//!   worker itself when it publishes a retry or a chain's next step);
//! * a [`Consumer`] that feeds [`Delivery`]s to the worker and takes back a
//!   [`Settlement`] for each one: ack it, reject it, or requeue it.
//!
//! The worker is generic over the broker and picks it once, from the URL,
//! when it starts; a delivery's token is the consumer's own type, so it can
//! only be settled where it came from. What differs — kombu's `unacked`
//! bookkeeping on Redis, delivery tags and prefetch on AMQP — stays in the
//! transport's module, where each file explains its own guarantees.

pub mod amqp;
pub mod redis;

use thiserror::Error;

use crate::{
    protocol::{TaskMessage, redis_envelope::Received},
    redis_connection::RedisConnectError,
};
use amqp_connect::{AmqpError, Redacted, SecretUrl};

/// Anything that can go wrong talking to a broker, phrased for the user.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error(
        "unsupported broker URL '{0}': use redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0) or amqp://USER:PASSWORD@HOST:5672/VHOST"
    )]
    UnknownScheme(String),
    #[error(transparent)]
    RedisConnect(#[from] RedisConnectError),
    #[error("Redis error at {url} while {action}: {source}")]
    Redis {
        url: String,
        action: &'static str,
        #[source]
        source: ::redis::RedisError,
    },
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    /// Another live worker holds this node name's exclusive mailbox queue.
    #[error(
        "another worker already runs as {hostname} on this broker: give each worker its own name with -n NAME@%h"
    )]
    NodeNameTaken { hostname: String },
    /// Given up before the broker answered (the broker is slow or away).
    #[error("{what} was given up before the broker answered")]
    Unfinished { what: &'static str },
}

impl BrokerError {
    /// True if the broker was away, as opposed to refusing what we asked:
    /// the kind of failure that ends by itself once it is back.
    pub fn is_connection_error(&self) -> bool {
        match self {
            BrokerError::RedisConnect(RedisConnectError::Unreachable { .. }) => true,
            BrokerError::Redis { source, .. } => redis::is_connection_error(source),
            BrokerError::Amqp(AmqpError::Unreachable { .. }) => true,
            BrokerError::Unfinished { .. } => true,
            BrokerError::Amqp(AmqpError::Broker { source, .. }) => {
                amqp_connect::amqp::is_connection_error(source)
            }
            _ => false,
        }
    }
}

/// Which transport a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Redis,
    Amqp,
}

impl Transport {
    /// Picks the transport from the URL scheme, as Celery does.
    pub fn of(url: &str) -> Result<Transport, BrokerError> {
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "redis" | "rediss" | "sentinel" if url.contains("://") => Ok(Transport::Redis),
            "amqp" | "amqps" if url.contains("://") => Ok(Transport::Amqp),
            _ => Err(BrokerError::UnknownScheme(Redacted(url).to_string())),
        }
    }
}

/// What happens to a delivery when the worker is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done (succeeded, failed for good, retried, or revoked): forget it.
    Ack,
    /// Unprocessable: drop it (AMQP: to the queue's dead-letter exchange, if any).
    Reject,
    /// Not done, through no fault of the message (e.g. the result could not
    /// be stored): put it back on the queue to be run again.
    Requeue,
}

/// A task message handed to the worker, with what it takes to settle it.
#[derive(Debug)]
pub struct Delivery<Token> {
    pub received: Received,
    /// The queue it came from (for logs and retries).
    pub queue: String,
    pub redelivered: bool,
    /// The transport's handle on this delivery (its tag), for settling it.
    pub token: Token,
}

/// Where and how a worker consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: SecretUrl,
    pub queues: Vec<String>,
    pub prefetch: usize,
    /// Redis only: how old an unacked entry must be for a sweep to restore it.
    pub visibility_timeout: std::time::Duration,
    /// Connection settings: for AMQP all of them (their URL is `url`), for
    /// Redis the connect timeout.
    pub amqp: amqp_connect::AmqpSettings,
}

/// The sending half of a transport: `delay()`'s side, and the worker's
/// own when it publishes a retry or the next step of a chain.
pub trait Producer: Send + 'static {
    /// Sends many messages to `queue` as fast as the transport allows (one
    /// pipelined round trip per batch on Redis, a confirm window on AMQP).
    /// On AMQP they may still be unconfirmed: [`flush`](Self::flush) before
    /// reporting success.
    fn send_batch(
        &mut self,
        messages: &[TaskMessage],
        queue: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Returns once the broker has taken responsibility for everything sent.
    fn flush(&mut self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    fn close(self) -> impl Future<Output = ()> + Send;

    /// Sends one message to `queue` (see [`send_batch`](Self::send_batch)).
    fn send(
        &mut self,
        message: &TaskMessage,
        queue: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.send_batch(std::slice::from_ref(message), queue)
    }
}

/// The consuming half of a transport: it feeds [`Delivery`]s to the worker
/// and takes back a [`Settlement`] for each. Its [`Token`](Self::Token) is
/// its own kind of delivery handle, so a token always goes back to the
/// transport it came from.
pub trait Consumer: Clone + Send + Sync + 'static {
    type Token: Send + std::fmt::Debug + 'static;

    /// Settles a delivery (the write may be batched with others).
    fn settle(&self, token: Self::Token, settlement: Settlement);

    /// Frees the prefetch slot of a delivery held for its ETA, so waiting
    /// tasks do not block fresh ones (Celery raises its prefetch the same way).
    fn release_slot(&self, token: &mut Self::Token);

    /// Stops taking new deliveries (warm shutdown, step one).
    fn stop_fetching(&self);

    /// Hands back deliveries that were received but never started (warm
    /// shutdown), so another worker gets them at once.
    fn give_back(&self, tokens: Vec<Self::Token>) -> impl Future<Output = ()> + Send;

    /// Cold shutdown: everything unacked goes back to the queue at once.
    fn abandon(&self) -> impl Future<Output = ()> + Send;

    /// Writes outstanding settlements and disconnects.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A transport: how to open its two halves.
pub trait Broker: 'static {
    type Producer: Producer;
    type Consumer: Consumer;

    /// Connects a producer; `settings` carries the connect timeout (and,
    /// for AMQP, everything else: the URL is `url`).
    fn producer(
        url: &str,
        settings: amqp_connect::AmqpSettings,
    ) -> impl Future<Output = Result<Self::Producer, BrokerError>> + Send;

    /// Connects and starts delivering into the returned channel.
    #[allow(clippy::type_complexity)] // the channel's item is spelled out once, here
    fn consumer(
        config: &ConsumerConfig,
    ) -> impl Future<
        Output = Result<
            (
                Self::Consumer,
                tokio::sync::mpsc::Receiver<Delivery<<Self::Consumer as Consumer>::Token>>,
            ),
            BrokerError,
        >,
    > + Send;
}

/// A producer for whichever broker a URL names, for the programs that pick
/// it at run time (`send`, beat).
#[derive(Debug)]
pub enum AnyProducer {
    Redis(redis::RedisProducer),
    // Boxed: the AMQP producer holds a whole confirm window.
    Amqp(Box<amqp::AmqpProducer>),
}

impl AnyProducer {
    pub async fn connect(
        url: &str,
        settings: amqp_connect::AmqpSettings,
    ) -> Result<AnyProducer, BrokerError> {
        Ok(match Transport::of(url)? {
            Transport::Redis => AnyProducer::Redis(redis::Redis::producer(url, settings).await?),
            Transport::Amqp => {
                AnyProducer::Amqp(Box::new(amqp::Amqp::producer(url, settings).await?))
            }
        })
    }
}

impl Producer for AnyProducer {
    async fn send_batch(
        &mut self,
        messages: &[TaskMessage],
        queue: &str,
    ) -> Result<(), BrokerError> {
        match self {
            AnyProducer::Redis(redis) => redis.send_batch(messages, queue).await,
            AnyProducer::Amqp(amqp) => amqp.send_batch(messages, queue).await,
        }
    }

    async fn flush(&mut self) -> Result<(), BrokerError> {
        match self {
            AnyProducer::Redis(redis) => redis.flush().await,
            AnyProducer::Amqp(amqp) => amqp.flush().await,
        }
    }

    async fn close(self) {
        match self {
            AnyProducer::Redis(redis) => redis.close().await,
            AnyProducer::Amqp(amqp) => amqp.close().await,
        }
    }
}

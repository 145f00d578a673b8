//! The two brokers Celery's `broker_url` can name, behind one interface.
//!
//! ```python
//! # broker_url = 'amqp://guest:guest@xxx.xxx.xxx.xxx:5672'  # RabbitMQ
//! broker_url = 'redis://127.0.0.1/7'
//! ```
//!
//! As in Celery, the URL scheme picks the transport: `redis://`/`rediss://`
//! ([`redis`]) or `amqp://`/`amqps://` ([`amqp`]). Both offer the same two
//! halves:
//!
//! * a [`Producer`] that sends task messages (the `delay()` side, and the
//!   worker itself when it publishes a retry);
//! * a consumer that feeds [`Delivery`]s to the worker and takes back a
//!   [`Settlement`] for each one: ack it, or reject it.
//!
//! The worker never knows which transport it is on. What differs — kombu's
//! `unacked` bookkeeping on Redis, delivery tags and prefetch on AMQP — stays
//! in the transport module, where each file explains its own guarantees.

pub mod amqp;
pub mod redis;

use thiserror::Error;

use crate::{
    protocol::{TaskMessage, redis_envelope::Received},
    redis_connection::RedisConnectError,
};
use shared::{AmqpError, Redacted};

/// Anything that can go wrong talking to a broker, phrased for the user.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(
        "unsupported broker URL '{0}': use redis://HOST:PORT/DB (the blog's redis://127.0.0.1/7) or amqp://USER:PASSWORD@HOST:5672/VHOST"
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
                shared::amqp::is_connection_error(source)
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
            "redis" | "rediss" if url.contains("://") => Ok(Transport::Redis),
            "amqp" | "amqps" if url.contains("://") => Ok(Transport::Amqp),
            _ => Err(BrokerError::UnknownScheme(Redacted(url).to_string())),
        }
    }
}

/// Sends task messages to either broker.
#[derive(Debug)]
pub enum Producer {
    Redis(redis::RedisProducer),
    // Boxed: the AMQP producer holds a whole confirm window.
    Amqp(Box<amqp::AmqpProducer>),
}

impl Producer {
    pub async fn connect(
        url: &str,
        amqp_settings: shared::AmqpSettings,
    ) -> Result<Producer, BrokerError> {
        Ok(match Transport::of(url)? {
            Transport::Redis => Producer::Redis(
                redis::RedisProducer::connect(url, amqp_settings.connect_timeout).await?,
            ),
            Transport::Amqp => {
                Producer::Amqp(Box::new(amqp::AmqpProducer::connect(amqp_settings).await?))
            }
        })
    }

    /// Sends one message to `queue`. On AMQP it may still be unconfirmed:
    /// call [`flush`](Self::flush) before reporting success.
    pub async fn send(&mut self, message: &TaskMessage, queue: &str) -> Result<(), BrokerError> {
        match self {
            Producer::Redis(redis) => redis.send_batch(std::slice::from_ref(message), queue).await,
            Producer::Amqp(amqp) => amqp.send(message, queue).await,
        }
    }

    /// Sends many messages to `queue` as fast as the transport allows
    /// (one pipelined round trip per batch on Redis, a confirm window on AMQP).
    pub async fn send_batch(
        &mut self,
        messages: &[TaskMessage],
        queue: &str,
    ) -> Result<(), BrokerError> {
        match self {
            Producer::Redis(redis) => redis.send_batch(messages, queue).await,
            Producer::Amqp(amqp) => {
                for message in messages {
                    amqp.send(message, queue).await?;
                }
                Ok(())
            }
        }
    }

    /// Returns once the broker has taken responsibility for everything sent.
    pub async fn flush(&mut self) -> Result<(), BrokerError> {
        match self {
            Producer::Redis(_) => Ok(()),
            Producer::Amqp(amqp) => amqp.flush().await,
        }
    }

    pub async fn close(self) {
        if let Producer::Amqp(amqp) = self {
            amqp.close().await;
        }
    }
}

/// A task message handed to the worker, with what it needs to settle it.
#[derive(Debug)]
pub struct Delivery {
    pub received: Received,
    /// The queue it came from (for logs and retries).
    pub queue: String,
    pub redelivered: bool,
    pub token: SettleToken,
}

/// How the broker identifies one delivery when it is settled.
#[derive(Debug)]
pub enum SettleToken {
    Redis(redis::RedisToken),
    Amqp(amqp::AmqpToken),
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

/// Where and how a worker consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: String,
    pub queues: Vec<String>,
    pub prefetch: usize,
    /// Redis only: how old an unacked entry must be for a sweep to restore it.
    pub visibility_timeout: std::time::Duration,
    /// Connection settings: for AMQP all of them (their URL is `url`), for
    /// Redis the connect timeout.
    pub amqp: shared::AmqpSettings,
}

/// The consuming half of either broker.
#[derive(Debug, Clone)]
pub enum Consumer {
    Redis(redis::RedisConsumer),
    Amqp(amqp::AmqpConsumer),
}

impl Consumer {
    /// Connects and starts delivering into the returned channel.
    pub async fn start(
        config: &ConsumerConfig,
    ) -> Result<(Consumer, tokio::sync::mpsc::Receiver<Delivery>), BrokerError> {
        match Transport::of(&config.url)? {
            Transport::Redis => {
                let (consumer, deliveries) =
                    redis::RedisConsumer::start(redis::RedisConsumerConfig {
                        url: config.url.clone(),
                        queues: config.queues.clone(),
                        prefetch: config.prefetch,
                        visibility_timeout: config.visibility_timeout,
                        connect_timeout: config.amqp.connect_timeout,
                    })
                    .await?;
                Ok((Consumer::Redis(consumer), deliveries))
            }
            Transport::Amqp => {
                let mut settings = config.amqp.clone();
                settings.url = config.url.clone();
                let (consumer, deliveries) = amqp::AmqpConsumer::start(amqp::AmqpConsumerConfig {
                    settings,
                    queues: config.queues.clone(),
                    prefetch: u16::try_from(config.prefetch).unwrap_or(u16::MAX),
                })
                .await?;
                Ok((Consumer::Amqp(consumer), deliveries))
            }
        }
    }

    /// Settles a delivery (see [`Settlement`]).
    pub async fn settle(&self, token: SettleToken, settlement: Settlement) {
        match (self, token) {
            (Consumer::Redis(redis), SettleToken::Redis(token)) => redis.settle(token, settlement),
            (Consumer::Amqp(amqp), SettleToken::Amqp(token)) => amqp.settle(token, settlement),
            _ => {} // a token from the other transport cannot happen
        }
    }

    /// Frees the prefetch slot of a delivery held for its ETA.
    pub fn release_slot(&self, token: &mut SettleToken) {
        match (self, token) {
            (Consumer::Redis(redis), SettleToken::Redis(token)) => redis.release_slot(token),
            (Consumer::Amqp(amqp), SettleToken::Amqp(token)) => amqp.release_slot(token),
            _ => {}
        }
    }

    pub fn stop_fetching(&self) {
        match self {
            Consumer::Redis(redis) => redis.stop_fetching(),
            Consumer::Amqp(amqp) => amqp.stop_fetching(),
        }
    }

    /// Hands back deliveries that were received but never started (warm
    /// shutdown): on Redis they are restored to their queue now; on AMQP they
    /// stay unacked and RabbitMQ requeues them when the channel closes.
    pub async fn give_back(&self, tokens: Vec<SettleToken>) {
        if let Consumer::Redis(redis) = self {
            let tags: Vec<String> = tokens
                .iter()
                .filter_map(|token| match token {
                    SettleToken::Redis(token) => Some(redis::RedisConsumer::tag(token).to_owned()),
                    SettleToken::Amqp(_) => None,
                })
                .collect();
            let restored = redis.restore_tags(&tags).await;
            if restored > 0 {
                tracing::info!("Restoring {restored} unacknowledged message(s)");
            }
        }
    }

    /// Cold shutdown: everything unacked goes back to the queue at once.
    pub async fn abandon(&self) {
        match self {
            Consumer::Redis(redis) => {
                redis.restore_all_held().await;
                redis.close().await;
            }
            Consumer::Amqp(amqp) => amqp.close().await,
        }
    }

    /// Writes outstanding acks and disconnects.
    pub async fn close(&self) {
        match self {
            Consumer::Redis(redis) => redis.close().await,
            Consumer::Amqp(amqp) => amqp.close().await,
        }
    }
}

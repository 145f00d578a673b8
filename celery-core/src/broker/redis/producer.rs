//! Sending: one `LPUSH` of the kombu envelope onto the list named after the
//! queue (or its priority sub-list), as `delay()` does; see
//! [`crate::protocol::redis_envelope`].

use std::time::Duration;

use super::{Backoff, is_connection_error};
use crate::{
    broker::{BrokerError, Producer},
    protocol::{TaskMessage, redis_envelope},
    redis_connection::{RedisConnection, RedisOptions, Role},
};

/// Sends task messages with LPUSH, as `delay()` does.
#[derive(Clone, Debug)]
pub struct RedisProducer {
    redis: RedisConnection,
    /// How long a send keeps retrying while Redis is away.
    retry_for: Duration,
}

impl RedisProducer {
    /// Connects (bounded by the connect timeout). A send later keeps
    /// retrying for as long while Redis restarts or Sentinel fails over.
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self, BrokerError> {
        Ok(Self {
            redis: RedisConnection::open(url, Role::BROKER, options).await?,
            // Capped: an instant that far ahead would overflow the clock.
            retry_for: options.connect_timeout.min(Duration::from_secs(86_400)),
        })
    }
}

impl Producer for RedisProducer {
    /// LPUSHes every message in one pipelined round trip.
    ///
    /// If Redis is away, the batch is sent again once it is back (for up to
    /// the connect timeout). A batch whose reply was lost may so arrive
    /// twice: at least once, like every other send here, never lost.
    async fn send_batch(
        &mut self,
        messages: &[TaskMessage],
        queue: &str,
    ) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        for message in messages {
            let list = redis_envelope::priority_list(queue, message.properties.priority);
            pipe.lpush(list, redis_envelope::encode(message, queue))
                .ignore();
        }
        let give_up = tokio::time::Instant::now() + self.retry_for;
        let mut backoff = Backoff::default();
        loop {
            let mut connection = self.redis.manager();
            match pipe.query_async::<()>(&mut connection).await {
                Ok(()) => {
                    self.redis.watch().ok();
                    return Ok(());
                }
                Err(source)
                    if is_connection_error(&source) && tokio::time::Instant::now() < give_up =>
                {
                    self.redis.watch().lost(&source);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(source) => {
                    return Err(BrokerError::Redis {
                        url: self.redis.shown_url(),
                        action: "sending tasks",
                        source,
                    });
                }
            }
        }
    }

    /// A reply to `LPUSH` is Redis' promise already: nothing is pending.
    async fn flush(&mut self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn close(self) {}
}

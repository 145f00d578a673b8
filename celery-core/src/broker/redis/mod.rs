//! The Redis transport: kombu's lists and its `unacked` bookkeeping, without
//! kombu's loss window.
//!
//! **Sending** is one `LPUSH` of the kombu envelope onto the list named after
//! the queue (or its priority sub-list); see [`crate::protocol::redis_envelope`].
//!
//! **Receiving** is where the care goes. Redis has no acks, so kombu keeps
//! its own: a fetched message is recorded in the `unacked` hash (tag →
//! `[envelope, exchange, routing_key]`) and the `unacked_index` sorted set
//! (tag → fetch time); an ack deletes both; any worker's periodic sweep puts
//! back entries older than the visibility timeout. We keep exactly those keys,
//! so a Python worker's sweep restores what a dead Rust worker held and ours
//! restores what a dead Python worker held. Three things we do differently:
//!
//! 1. **No loss window.** kombu `BRPOP`s a message and *then* records it: a
//!    `kill -9` between the two loses it. Our `fetch.lua` pops and
//!    records in one Lua script, which Redis runs atomically, and it takes up
//!    to a batch of messages per round trip (one round trip per task could
//!    never reach a million tasks a minute).
//! 2. **No polling.** Lua cannot block, so the idle wait is separate: one
//!    waiter per list runs `BLMOVE list list RIGHT RIGHT` — a pop that pushes
//!    the same element straight back where it was, i.e. a blocking *peek*
//!    that cannot lose anything — and rings a bell. A new task is picked up
//!    within a round trip, not a sleep.
//! 3. **No double runs of held tasks.** A task with a far `eta` stays
//!    unacked while we hold it. kombu's sweep would re-queue it after the
//!    visibility timeout and it would run twice; we refresh the fetch time of
//!    everything we hold, so only a *dead* worker's messages look stale.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | [`producer`] | `LPUSH`, retried while Redis restarts |
//! | [`consumer`] | the worker's side: start, settle, give back, close |
//! | `fetch.rs` | the fetch thread (`fetch.lua`) and the blocking-peek waiters |
//! | (`control::transport::redis`) | remote control and events: pub/sub and reply lists |
//! | `bookkeeping.rs` | writing settlements, refreshing held tasks, kombu's sweep (`restore.lua`) |

mod bookkeeping;
pub mod consumer;
mod fetch;
pub mod producer;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::redis_connection::is_connection_error;
pub use consumer::{RedisConsumer, RedisToken};
pub use producer::RedisProducer;

use super::{Broker, BrokerError, ConsumerConfig, Delivery};

/// kombu's key names: shared with every Python worker on the same broker db.
pub const UNACKED: &str = "unacked";
pub const UNACKED_INDEX: &str = "unacked_index";
pub const UNACKED_MUTEX: &str = "unacked_mutex";

/// The Redis transport.
#[derive(Debug, Clone, Copy)]
pub struct Redis;

impl Broker for Redis {
    type Producer = RedisProducer;
    type Consumer = RedisConsumer;

    async fn producer(
        url: &str,
        settings: amqp_connect::AmqpSettings,
    ) -> Result<RedisProducer, BrokerError> {
        RedisProducer::connect(url, &(&settings).into()).await
    }

    async fn consumer(
        config: &ConsumerConfig,
    ) -> Result<(RedisConsumer, mpsc::Receiver<Delivery<RedisToken>>), BrokerError> {
        RedisConsumer::start(consumer::RedisConsumerConfig {
            url: config.url.clone(),
            queues: config.queues.clone(),
            prefetch: config.prefetch,
            visibility_timeout: config.visibility_timeout,
            options: (&config.amqp).into(),
        })
        .await
    }
}

/// Every list a consumer of `queues` reads, with its queue, in the order
/// they are served: priority 0 of every queue first, then priority 3, 6, 9
/// (kombu's BRPOP order). `rotation` shifts which queue comes first within
/// each priority, so one busy queue does not starve the others.
pub(crate) fn lists(queues: &[String], rotation: usize) -> Vec<(String, String)> {
    let mut queues = queues.to_vec();
    if !queues.is_empty() {
        let shift = rotation % queues.len();
        queues.rotate_left(shift);
    }
    let mut lists = Vec::new();
    for bucket in 0..4 {
        for queue in &queues {
            let list = crate::protocol::redis_envelope::queue_lists(queue)[bucket].clone();
            lists.push((list, queue.clone()));
        }
    }
    lists
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// Exponential backoff for reconnect loops: 100 ms doubling to 1 s.
///
/// The cap was 5 s. In the Sentinel failover test the worker then sat out
/// a 3.2 s sleep begun just before the new master was named, and resumed
/// 6.4 s after the kill; with 1 s it resumes about a second after the
/// promotion. A reconnect attempt a second per loop costs Redis nothing.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay =
            Duration::from_millis(100 * 2u64.pow(self.attempt.min(4))).min(Duration::from_secs(1));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps; returns false if `stop` fired instead.
    pub(crate) async fn sleep(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pure_tests {
    use super::*;

    #[test]
    fn lists_serve_priority_zero_of_every_queue_first_and_rotate() {
        let queues = ["a".to_owned(), "b".to_owned()];
        let names = |rotation| -> Vec<String> {
            lists(&queues, rotation)
                .into_iter()
                .map(|(list, queue)| format!("{}:{queue}", list.replace("\x06\x16", "/")))
                .collect()
        };
        assert_eq!(
            names(0),
            [
                "a:a", "b:b", "a/3:a", "b/3:b", "a/6:a", "b/6:b", "a/9:a", "b/9:b"
            ]
        );
        assert_eq!(names(1)[..2], ["b:b", "a:a"]);
        assert!(lists(&[], 3).is_empty());
    }

    #[test]
    fn backoff_doubles_from_100_ms_to_1_s() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}

//! The worker's side of the Redis transport: [`RedisConsumer`] starts the
//! fetch thread, the waiters and the bookkeeping loops, takes settlements,
//! and gives back what it holds at shutdown.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis::Script;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::is_connection_error;
use crate::{
    broker::{BrokerError, Consumer, Delivery, Settlement},
    redis_connection::{RedisConnection, RedisOptions, Role},
};

/// `fetch.lua` and `restore.lua`, loaded once per consumer.
pub(super) const FETCH_SCRIPT: &str = include_str!("fetch.lua");
pub(super) const RESTORE_SCRIPT: &str = include_str!("restore.lua");

/// Identifies one fetched message: its kombu delivery tag, and the prefetch
/// slot it occupies until it is settled.
#[derive(Debug)]
pub struct RedisToken {
    pub(super) tag: String,
    pub(super) slot: Option<OwnedSemaphorePermit>,
}

/// What the consumer needs to know.
#[derive(Debug, Clone)]
pub struct RedisConsumerConfig {
    pub url: amqp_connect::SecretUrl,
    pub queues: Vec<String>,
    /// Messages fetched but not settled, at most (concurrency × multiplier).
    pub prefetch: usize,
    pub visibility_timeout: Duration,
    /// How to connect: the first connection's bound, and the Sentinel master's name.
    pub options: RedisOptions,
}

/// The Redis side of a running worker: fetches into a channel, settles,
/// refreshes, sweeps. Cheap to clone.
#[derive(Clone)]
pub struct RedisConsumer {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("queues", &self.inner.config.queues)
            .finish()
    }
}

pub(super) struct Inner {
    pub(super) redis: RedisConnection,
    pub(super) config: RedisConsumerConfig,
    pub(super) fetch: Script,
    pub(super) restore: Script,
    /// Tags we hold (fetched, not yet settled) → queue. Refreshed and, on a
    /// cold shutdown, restored.
    pub(super) held: Mutex<HashMap<String, String>>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) settle_tx: mpsc::UnboundedSender<(String, Settlement)>,
    /// Settlements handed to the settle loop but not yet written.
    pub(super) unwritten: AtomicUsize,
    pub(super) stop_fetching: CancellationToken,
    pub(super) stop_all: CancellationToken,
    /// Rung by a waiter when a list it watches has something in it.
    pub(super) bell: Notify,
    /// Bumped each time the fetcher finds nothing; waiters re-arm on it.
    pub(super) idle: watch::Sender<u64>,
}

impl RedisConsumer {
    /// Connects, runs the start-up sweep, and starts fetching into the
    /// returned channel.
    pub async fn start(
        config: RedisConsumerConfig,
    ) -> Result<(RedisConsumer, mpsc::Receiver<Delivery<RedisToken>>), BrokerError> {
        let redis = RedisConnection::open(&config.url, Role::BROKER, &config.options).await?;
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let (deliveries_tx, deliveries_rx) = mpsc::channel(config.prefetch.max(1));
        let consumer = RedisConsumer {
            inner: Arc::new(Inner {
                redis,
                fetch: Script::new(FETCH_SCRIPT),
                restore: Script::new(RESTORE_SCRIPT),
                held: Mutex::new(HashMap::new()),
                slots: Arc::new(Semaphore::new(config.prefetch.max(1))),
                settle_tx,
                unwritten: AtomicUsize::new(0),
                stop_fetching: CancellationToken::new(),
                stop_all: CancellationToken::new(),
                bell: Notify::new(),
                idle: watch::Sender::new(0),
                config,
            }),
        };
        // Like kombu at start-up: bring back what dead workers left behind.
        consumer.sweep_stale().await;
        consumer.clone().spawn_fetcher(deliveries_tx)?;
        tokio::spawn(consumer.clone().settle_loop(settle_rx));
        tokio::spawn(consumer.clone().refresh_loop());
        tokio::spawn(consumer.clone().sweep_loop());
        for list in super::lists(&consumer.inner.config.queues, 0) {
            tokio::spawn(consumer.clone().wait_loop(list));
        }
        Ok((consumer, deliveries_rx))
    }

    pub(super) fn held(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reports a failed Redis call to the connection's watch (a lost
    /// connection is logged once there), or logs it if Redis answered with
    /// an error instead.
    pub(super) fn report(&self, error: &redis::RedisError, doing: &str) {
        if is_connection_error(error) {
            self.inner.redis.watch().lost(error);
        } else {
            warn!(%error, "Redis refused {doing}; retrying");
        }
    }

    /// The tag of a token, for restoring it.
    pub fn tag(token: &RedisToken) -> &str {
        &token.tag
    }

    /// Cold shutdown: every message we still hold goes back to its queue now.
    pub async fn restore_all_held(&self) -> usize {
        let tags: Vec<String> = self.held().keys().cloned().collect();
        let restored = self.restore_tags(&tags).await;
        if restored > 0 {
            info!("Restoring {restored} unacknowledged message(s)");
        }
        restored
    }
}

impl Consumer for RedisConsumer {
    type Token = RedisToken;

    /// Settles a delivery, as kombu's `Message.ack/reject/requeue` do: ack and
    /// reject both end the bookkeeping (a rejected message is not requeued),
    /// requeue puts the message back at the end of its queue. The writes are
    /// batched with other settlements by the settle loop.
    fn settle(&self, token: RedisToken, settlement: Settlement) {
        if !token.tag.is_empty() {
            self.inner.unwritten.fetch_add(1, Ordering::AcqRel);
            if self.inner.settle_tx.send((token.tag, settlement)).is_err() {
                self.inner.unwritten.fetch_sub(1, Ordering::AcqRel);
                warn!("settlement after shutdown; the message will be restored by a sweep");
            }
        }
        drop(token.slot);
    }

    /// Frees the prefetch slot of a message held for its ETA, so waiting
    /// tasks do not block fresh ones (Celery raises its prefetch the same way).
    fn release_slot(&self, token: &mut RedisToken) {
        token.slot.take();
    }

    /// Stops taking new messages (warm shutdown, step one).
    fn stop_fetching(&self) {
        self.inner.stop_fetching.cancel();
    }

    /// Puts deliveries that never started back on their queues now (kombu's
    /// restore, so another worker gets them at once).
    async fn give_back(&self, tokens: Vec<RedisToken>) {
        let tags: Vec<String> = tokens.into_iter().map(|token| token.tag).collect();
        let restored = self.restore_tags(&tags).await;
        if restored > 0 {
            info!("Restoring {restored} unacknowledged message(s)");
        }
    }

    /// Cold shutdown: every message we still hold goes back to its queue now.
    async fn abandon(&self) {
        self.restore_all_held().await;
        self.close().await;
    }

    /// Waits (up to 10 s) until every settlement so far is written, then
    /// stops the background loops.
    async fn close(&self) {
        self.inner.stop_fetching.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.inner.unwritten.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.inner.stop_all.cancel();
    }
}

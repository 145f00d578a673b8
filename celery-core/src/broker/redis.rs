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
//!    `kill -9` between the two loses it. Our [`FETCH_SCRIPT`] pops and
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

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{BrokerError, Delivery, SettleToken, Settlement};
pub use crate::redis_connection::is_connection_error;
use crate::{
    protocol::{TaskMessage, redis_envelope},
    redis_connection::{RedisConnection, Role},
};

/// kombu's key names: shared with every Python worker on the same broker db.
pub const UNACKED: &str = "unacked";
pub const UNACKED_INDEX: &str = "unacked_index";
pub const UNACKED_MUTEX: &str = "unacked_mutex";

/// Messages taken per fetch round trip, at most.
const MAX_FETCH: usize = 256;
/// kombu sweeps for stale messages about this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(100);

/// Pops up to ARGV[1] messages from the lists in KEYS[3..] and records each
/// in `unacked` (KEYS[1]) and `unacked_index` (KEYS[2]) in the same atomic
/// step. Returns a flat list of (tag, envelope, queue) triples. A message
/// that is not even JSON gets an empty tag and no bookkeeping: it can only
/// be rejected, and kombu's sweep could not restore it anyway.
pub const FETCH_SCRIPT: &str = r#"
-- A kombu envelope ends with its "properties" object. Finding the three
-- fields we need with plain substring searches costs well under a
-- microsecond; decoding the ~1 KB document with cjson (or even one Lua
-- pattern with %s* over it) costs ~10 us per message inside Redis' single
-- thread. Other layouts (compact JSON) fall back to cjson.
local function string_field(raw, key, init)
  local _, stop = string.find(raw, '"' .. key .. '": "', init, true)
  if not stop then return nil end
  local close = string.find(raw, '"', stop + 1, true)
  if not close then return nil end
  local value = string.sub(raw, stop + 1, close - 1)
  if string.find(value, '\\', 1, true) then return nil end
  return value
end

local function fields(raw)
  local start = string.find(raw, '"properties": {', 1, true)
  if start then
    local tag = string_field(raw, 'delivery_tag', start)
    if tag and tag ~= '' then
      return true, tag, string_field(raw, 'exchange', start), string_field(raw, 'routing_key', start)
    end
  end
  local ok, envelope = pcall(cjson.decode, raw)
  if not ok or type(envelope) ~= 'table' then return false end
  local properties = envelope['properties']
  if type(properties) ~= 'table' then return true end
  local tag, exchange, routing_key = nil, nil, nil
  if type(properties['delivery_tag']) == 'string' then tag = properties['delivery_tag'] end
  local info = properties['delivery_info']
  if type(info) == 'table' then
    if type(info['exchange']) == 'string' then exchange = info['exchange'] end
    if type(info['routing_key']) == 'string' then routing_key = info['routing_key'] end
  end
  return true, tag, exchange, routing_key
end

local result = {}
local max = tonumber(ARGV[1])
local taken = 0
for i = 3, #KEYS do
  local queue = ARGV[i + 1]
  while taken < max do
    local raw = redis.call('RPOP', KEYS[i])
    if not raw then break end
    taken = taken + 1
    local json, tag, exchange, routing_key = fields(raw)
    if json then
      exchange = exchange or ''
      routing_key = routing_key or queue
      -- A missing or duplicate tag would make two messages share one entry.
      if not tag or redis.call('HEXISTS', KEYS[1], tag) == 1 then
        tag = (tag or 'untagged') .. '~' .. ARGV[3] .. '~' .. taken
      end
      local entry = '[' .. raw .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(routing_key) .. ']'
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
      redis.call('HSET', KEYS[1], tag, entry)
    else
      tag = ''
    end
    table.insert(result, tag)
    table.insert(result, raw)
    table.insert(result, queue)
  end
  if taken >= max then break end
end
return result
"#;

/// Puts unacked messages (tags in ARGV[3..]) back on their queue, as kombu's
/// restore does: marked `redelivered`, onto the priority list, RPUSH (served
/// next) or LPUSH (ARGV[2] == 'left'). Only entries fetched at or before
/// ARGV[1] are touched, so a sweep never steals a message whose owner has
/// just refreshed it. Atomic per call.
pub const RESTORE_SCRIPT: &str = r#"
local restored = 0
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV do
  local tag = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], tag)
  if not score or tonumber(score) <= cutoff then
    local entry = redis.call('HGET', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
    redis.call('HDEL', KEYS[1], tag)
    local ok, decoded = false, nil
    if entry then ok, decoded = pcall(cjson.decode, entry) end
    if ok and type(decoded) == 'table' and type(decoded[1]) == 'table' then
      local envelope, exchange, routing_key = decoded[1], decoded[2], decoded[3]
      local priority = 0
      if type(envelope['headers']) == 'table' then envelope['headers']['redelivered'] = true end
      local properties = envelope['properties']
      if type(properties) == 'table' then
        if type(properties['delivery_info']) == 'table' then properties['delivery_info']['redelivered'] = true end
        if type(properties['priority']) == 'number' then priority = properties['priority'] end
      end
      local queues = {}
      if type(exchange) ~= 'string' or exchange == '' then
        queues = {routing_key}
      else
        for _, member in ipairs(redis.call('SMEMBERS', '_kombu.binding.' .. exchange)) do
          local key, _, queue = string.match(member, '^(.-)\6\22(.-)\6\22(.*)$')
          if queue and (key == routing_key or key == '') then table.insert(queues, queue) end
        end
        if #queues == 0 then queues = {routing_key} end
      end
      local suffix = ''
      if priority >= 9 then suffix = '\6\0229' elseif priority >= 6 then suffix = '\6\0226' elseif priority >= 3 then suffix = '\6\0223' end
      local payload = cjson.encode(envelope)
      for _, queue in ipairs(queues) do
        if type(queue) == 'string' then
          if ARGV[2] == 'left' then redis.call('LPUSH', queue .. suffix, payload)
          else redis.call('RPUSH', queue .. suffix, payload) end
        end
      end
      restored = restored + 1
    end
  end
end
return restored
"#;

/// Releases the sweep mutex only if we still own it (kombu's Lua release).
const RELEASE_MUTEX_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Sends task messages with LPUSH, as `delay()` does.
#[derive(Clone, Debug)]
pub struct RedisProducer {
    redis: RedisConnection,
    /// How long a send keeps retrying while Redis is away.
    retry_for: Duration,
}

impl RedisProducer {
    /// Connects (bounded by `connect_timeout`). A send later keeps retrying
    /// for as long while Redis restarts.
    pub async fn connect(url: &str, connect_timeout: Duration) -> Result<Self, BrokerError> {
        Ok(Self {
            redis: RedisConnection::open(url, Role::BROKER, connect_timeout).await?,
            retry_for: connect_timeout,
        })
    }

    /// LPUSHes every message in one pipelined round trip.
    ///
    /// If Redis is away, the batch is sent again once it is back (for up to
    /// the connect timeout). A batch whose reply was lost may so arrive
    /// twice: at least once, like every other send here, never lost.
    pub async fn send_batch(
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
}

/// Identifies one fetched message: its kombu delivery tag, and the prefetch
/// slot it occupies until it is settled.
#[derive(Debug)]
pub struct RedisToken {
    tag: String,
    slot: Option<OwnedSemaphorePermit>,
}

/// What the consumer needs to know.
#[derive(Debug, Clone)]
pub struct RedisConsumerConfig {
    pub url: String,
    pub queues: Vec<String>,
    /// Messages fetched but not settled, at most (concurrency × multiplier).
    pub prefetch: usize,
    pub visibility_timeout: Duration,
    /// How long to keep trying the first connection.
    pub connect_timeout: Duration,
}

/// The Redis side of a running worker: fetches into a channel, settles,
/// refreshes, sweeps. Cheap to clone.
#[derive(Clone)]
pub struct RedisConsumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("queues", &self.inner.config.queues)
            .finish()
    }
}

struct Inner {
    redis: RedisConnection,
    config: RedisConsumerConfig,
    fetch: Script,
    restore: Script,
    /// Tags we hold (fetched, not yet settled) → queue. Refreshed and, on a
    /// cold shutdown, restored.
    held: Mutex<HashMap<String, String>>,
    slots: Arc<Semaphore>,
    settle_tx: mpsc::UnboundedSender<(String, Settlement)>,
    /// Settlements handed to the settle loop but not yet written.
    unwritten: AtomicUsize,
    stop_fetching: CancellationToken,
    stop_all: CancellationToken,
    /// Rung by a waiter when a list it watches has something in it.
    bell: Notify,
    /// Bumped each time the fetcher finds nothing; waiters re-arm on it.
    idle: watch::Sender<u64>,
}

impl RedisConsumer {
    /// Connects, runs the start-up sweep, and starts fetching into the
    /// returned channel.
    pub async fn start(
        config: RedisConsumerConfig,
    ) -> Result<(RedisConsumer, mpsc::Receiver<Delivery>), BrokerError> {
        let redis =
            RedisConnection::open(&config.url, Role::BROKER, config.connect_timeout).await?;
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
        for list in consumer.lists(0) {
            tokio::spawn(consumer.clone().wait_loop(list));
        }
        Ok((consumer, deliveries_rx))
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reports a failed Redis call to the connection's watch (a lost
    /// connection is logged once there), or logs it if Redis answered with
    /// an error instead.
    fn report(&self, error: &redis::RedisError, doing: &str) {
        if is_connection_error(error) {
            self.inner.redis.watch().lost(error);
        } else {
            warn!(%error, "Redis refused {doing}; retrying");
        }
    }

    /// Every list we read, in the order we serve them: priority 0 of every
    /// queue first, then priority 3, 6, 9 (kombu's BRPOP order).
    /// `rotation` shifts which queue comes first within each priority, so one
    /// busy queue does not starve the others.
    fn lists(&self, rotation: usize) -> Vec<(String, String)> {
        let mut queues = self.inner.config.queues.clone();
        if !queues.is_empty() {
            let shift = rotation % queues.len();
            queues.rotate_left(shift);
        }
        let mut lists = Vec::new();
        for bucket in 0..4 {
            for queue in &queues {
                lists.push((
                    redis_envelope::queue_lists(queue)[bucket].clone(),
                    queue.clone(),
                ));
            }
        }
        lists
    }

    /// Runs the fetch loop on a thread of its own, with its own connection.
    ///
    /// On the worker's single-threaded event loop the fetcher would be
    /// scheduled behind every task it just handed out, so the next fetch
    /// would start only once the worker ran dry — fetching and running would
    /// take turns. On its own thread the next batch (and its JSON decoding)
    /// is under way while the current one runs.
    fn spawn_fetcher(self, deliveries: mpsc::Sender<Delivery>) -> Result<(), BrokerError> {
        let url = self.inner.redis.shown_url();
        let failed = move |error: std::io::Error| BrokerError::Redis {
            url: url.clone(),
            action: "starting the fetch thread",
            source: redis::RedisError::from(error),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(&failed)?;
        std::thread::Builder::new()
            .name("redis-fetch".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    // Redis may have gone away since the start-up connect:
                    // keep trying, as every other loop here does.
                    let mut backoff = Backoff::default();
                    loop {
                        match self.inner.redis.new_manager().await {
                            Ok(connection) => break self.fetch_loop(deliveries, connection).await,
                            Err(error) => {
                                self.report(&error, "the fetcher's connection");
                                if !backoff.sleep(&self.inner.stop_fetching).await {
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .map_err(failed)?;
        Ok(())
    }

    /// Fetches up to `max` messages atomically (see [`FETCH_SCRIPT`]).
    async fn fetch(
        &self,
        connection: &mut ConnectionManager,
        max: usize,
        round: u64,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>, String)>> {
        let lists = self.lists(round as usize);
        let mut invocation = self.inner.fetch.prepare_invoke();
        invocation.key(UNACKED).key(UNACKED_INDEX);
        invocation
            .arg(max)
            .arg(unix_now())
            .arg(format!("{}-{round}", std::process::id()));
        for (list, queue) in &lists {
            invocation.key(list).arg(queue);
        }
        let flat: Vec<redis::Value> = invocation.invoke_async(connection).await?;
        let mut fetched = Vec::with_capacity(flat.len() / 3);
        let mut items = flat.into_iter().map(|value| match value {
            // Move the bytes out: an envelope is ~1 KB, and copies add up at 20,000/s.
            redis::Value::BulkString(bytes) => bytes,
            _ => Vec::new(),
        });
        while let (Some(tag), Some(raw), Some(queue)) = (items.next(), items.next(), items.next()) {
            let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap_or_default();
            fetched.push((text(tag), raw, text(queue)));
        }
        Ok(fetched)
    }

    async fn fetch_loop(
        self,
        deliveries: mpsc::Sender<Delivery>,
        mut connection: ConnectionManager,
    ) {
        let stop = self.inner.stop_fetching.clone();
        let mut round = 0u64;
        let mut backoff = Backoff::default();
        let mut busy = false;
        loop {
            // Wait for free prefetch slots, then take as many as are free. While
            // busy, wait for half the window: a round trip per handful of
            // tasks would make the fetch, not the work, the bottleneck.
            let wanted = if busy {
                (self.inner.config.prefetch / 2).clamp(1, MAX_FETCH)
            } else {
                1
            };
            let first = tokio::select! {
                () = stop.cancelled() => return,
                slots = self.inner.slots.clone().acquire_many_owned(wanted as u32) => match slots { Ok(slots) => slots, Err(_) => return },
            };
            let mut slots: Vec<OwnedSemaphorePermit> = vec![first];
            let mut taken = wanted;
            while taken < MAX_FETCH {
                match self.inner.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        slots.push(slot);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            round += 1;
            let fetched = match self.fetch(&mut connection, taken, round).await {
                Ok(fetched) => {
                    backoff.reset();
                    self.inner.redis.watch().ok();
                    fetched
                }
                Err(error) => {
                    self.report(&error, "fetching tasks");
                    drop(slots);
                    backoff.sleep(&stop).await;
                    continue;
                }
            };
            busy = !fetched.is_empty();
            if fetched.is_empty() {
                drop(slots);
                // Nothing to do: re-arm the waiters and block until one rings.
                self.inner.idle.send_modify(|generation| *generation += 1);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.inner.bell.notified() => {}
                    // A safety net only: waiters normally ring first.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            {
                let mut held = self.held();
                for (tag, _, queue) in &fetched {
                    if !tag.is_empty() {
                        held.insert(tag.clone(), queue.clone());
                    }
                }
            }
            // One prefetch slot per message; the first permit may hold several.
            let mut slots = slots.into_iter().flat_map(|mut permit| {
                let mut single = Vec::with_capacity(permit.num_permits());
                while permit.num_permits() > 1 {
                    if let Some(one) = permit.split(1) {
                        single.push(one);
                    }
                }
                single.push(permit);
                single
            });
            for (tag, raw, queue) in fetched {
                let slot = slots.next();
                let received = redis_envelope::decode(&raw);
                let redelivered = received.message.as_ref().is_ok_and(|message| {
                    message
                        .headers
                        .extra
                        .get("redelivered")
                        .and_then(|v| v.as_bool())
                        == Some(true)
                });
                let delivery = Delivery {
                    received,
                    queue,
                    redelivered,
                    token: SettleToken::Redis(RedisToken { tag, slot }),
                };
                if let Err(returned) = deliveries.send(delivery).await {
                    // The worker is gone: give the message back rather than hold it.
                    if let SettleToken::Redis(token) = returned.0.token {
                        self.restore_tags(&[token.tag]).await;
                    }
                }
            }
        }
    }

    /// One waiter per list: blocks in Redis until the list is non-empty,
    /// rings the bell, then waits until the fetcher has drained what it saw.
    async fn wait_loop(self, (list, _queue): (String, String)) {
        let stop = self.inner.stop_fetching.clone();
        let mut idle = self.inner.idle.subscribe();
        let mut connection = None;
        let mut backoff = Backoff::default();
        while !stop.is_cancelled() {
            if connection.is_none() {
                match self.inner.redis.blocking_connection().await {
                    Ok(fresh) => connection = Some(fresh),
                    Err(error) => {
                        // The fetcher reports the outage; one report is enough.
                        debug!(%error, "waiter cannot connect yet");
                        backoff.sleep(&stop).await;
                        continue;
                    }
                }
            }
            let Some(conn) = connection.as_mut() else {
                continue;
            };
            idle.borrow_and_update();
            // BLMOVE list list RIGHT RIGHT: pops the tail and pushes it back
            // as the tail, atomically — a blocking peek.
            let mut blmove = redis::cmd("BLMOVE");
            blmove
                .arg(&list)
                .arg(&list)
                .arg("RIGHT")
                .arg("RIGHT")
                .arg(1.0);
            let peeked: redis::RedisResult<Option<Vec<u8>>> = tokio::select! {
                () = stop.cancelled() => return,
                result = blmove.query_async(conn) => result,
            };
            match peeked {
                Ok(None) => {}
                Ok(Some(_)) => {
                    backoff.reset();
                    self.inner.bell.notify_one();
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = idle.changed() => {}
                    }
                }
                Err(error) => {
                    debug!(%error, "waiter lost its connection");
                    connection = None;
                    backoff.sleep(&stop).await;
                }
            }
        }
    }

    /// Settles a delivery, as kombu's `Message.ack/reject/requeue` do: ack and
    /// reject both end the bookkeeping (a rejected message is not requeued),
    /// requeue puts the message back at the end of its queue. The writes are
    /// batched with other settlements by [`settle_loop`](Self::settle_loop).
    pub fn settle(&self, token: RedisToken, settlement: Settlement) {
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
    pub fn release_slot(&self, token: &mut RedisToken) {
        token.slot.take();
    }

    /// Writes settlements in batches, each retried until Redis takes it:
    /// one `MULTI ZREM unacked_index … HDEL unacked … EXEC` for the acks and
    /// rejects, one [`RESTORE_SCRIPT`] call for the requeues.
    async fn settle_loop(self, mut settled: mpsc::UnboundedReceiver<(String, Settlement)>) {
        while let Some(first) = settled.recv().await {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match settled.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let count = batch.len();
            let (requeued, done): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|(_, settlement)| *settlement == Settlement::Requeue);
            let done: Vec<String> = done.into_iter().map(|(tag, _)| tag).collect();
            let requeued: Vec<String> = requeued.into_iter().map(|(tag, _)| tag).collect();
            // These tasks' log lines leave before their acks: a worker
            // killed right after an ack has still logged what it ran.
            shared::logging::flush();
            if !done.is_empty() && !self.retrying("acking tasks", || self.ack_tags(&done)).await {
                return;
            }
            if !requeued.is_empty()
                && !self
                    .retrying("requeueing tasks", || {
                        self.restore_script(&requeued, f64::MAX, End::Back)
                    })
                    .await
            {
                return;
            }
            {
                let mut held = self.held();
                for tag in done.iter().chain(&requeued) {
                    held.remove(tag);
                }
            }
            self.inner.unwritten.fetch_sub(count, Ordering::AcqRel);
        }
    }

    /// Runs `write` until it succeeds; false if the consumer was stopped
    /// for good first.
    async fn retrying<F, T>(&self, doing: &str, write: impl Fn() -> F) -> bool
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match write().await {
                Ok(_) => {
                    self.inner.redis.watch().ok();
                    return true;
                }
                Err(error) => {
                    self.report(&error, doing);
                    // Even at shutdown we keep trying for a while (`close`
                    // waits): an ack given up on means the task runs again.
                    if !backoff.sleep(&self.inner.stop_all).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn ack_tags(&self, tags: &[String]) -> redis::RedisResult<()> {
        let mut connection = self.inner.redis.manager();
        redis::pipe()
            .atomic()
            .zrem(UNACKED_INDEX, tags)
            .ignore()
            .hdel(UNACKED, tags)
            .ignore()
            .query_async(&mut connection)
            .await
    }

    /// Keeps the fetch time of everything we hold fresh, so no sweep — ours
    /// or a Python worker's — mistakes a held ETA task for a dead worker's.
    async fn refresh_loop(self) {
        let period = (self.inner.config.visibility_timeout / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = self.inner.stop_all.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let tags: Vec<String> = self.held().keys().cloned().collect();
            let now = unix_now();
            for chunk in tags.chunks(1000) {
                let mut pipe = redis::pipe();
                pipe.cmd("ZADD").arg(UNACKED_INDEX).arg("XX");
                for tag in chunk {
                    pipe.arg(now).arg(tag);
                }
                let mut connection = self.inner.redis.manager();
                if let Err(error) = pipe.query_async::<()>(&mut connection).await {
                    self.report(&error, "refreshing held tasks");
                }
            }
        }
    }

    async fn sweep_loop(self) {
        let period = SWEEP_INTERVAL.min(
            self.inner
                .config
                .visibility_timeout
                .max(Duration::from_secs(1)),
        );
        loop {
            tokio::select! {
                () = self.inner.stop_all.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            self.sweep_stale().await;
        }
    }

    /// kombu's visibility sweep: under `unacked_mutex`, restore every entry
    /// fetched longer ago than the visibility timeout.
    pub async fn sweep_stale(&self) -> usize {
        let token = uuid::Uuid::new_v4().to_string();
        let mut connection = self.inner.redis.manager();
        let locked: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(UNACKED_MUTEX)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(300_000)
            .query_async(&mut connection)
            .await;
        if !matches!(locked, Ok(Some(_))) {
            return 0; // another worker is sweeping, or Redis is away
        }
        let cutoff = unix_now() - self.inner.config.visibility_timeout.as_secs_f64();
        let stale: Vec<String> = connection
            .zrangebyscore_limit(UNACKED_INDEX, "-inf", cutoff, 0, 1000)
            .await
            .unwrap_or_default();
        let restored = if stale.is_empty() {
            0
        } else {
            self.run_restore(&stale, cutoff).await
        };
        let _: redis::RedisResult<i64> = Script::new(RELEASE_MUTEX_SCRIPT)
            .key(UNACKED_MUTEX)
            .arg(&token)
            .invoke_async(&mut connection)
            .await;
        if restored > 0 {
            info!("Restoring {restored} unacknowledged message(s)");
        }
        restored
    }

    /// Restores `tags` (see [`RESTORE_SCRIPT`]) to the front of their queues;
    /// a failure is reported, and a later sweep restores what is left.
    async fn run_restore(&self, tags: &[String], cutoff: f64) -> usize {
        match self.restore_script(tags, cutoff, End::Front).await {
            Ok(restored) => restored,
            Err(error) => {
                self.report(&error, "restoring unacked messages");
                0
            }
        }
    }

    async fn restore_script(
        &self,
        tags: &[String],
        cutoff: f64,
        end: End,
    ) -> redis::RedisResult<usize> {
        let mut restored = 0;
        for chunk in tags.chunks(500) {
            let mut invocation = self.inner.restore.prepare_invoke();
            invocation
                .key(UNACKED)
                .key(UNACKED_INDEX)
                .arg(cutoff)
                .arg(match end {
                    End::Front => "right",
                    End::Back => "left",
                });
            for tag in chunk {
                invocation.arg(tag);
            }
            let mut connection = self.inner.redis.manager();
            restored += invocation.invoke_async::<usize>(&mut connection).await?;
        }
        Ok(restored)
    }

    /// Puts the given held messages back on their queues now.
    pub async fn restore_tags(&self, tags: &[String]) -> usize {
        let tags: Vec<String> = tags.iter().filter(|tag| !tag.is_empty()).cloned().collect();
        if tags.is_empty() {
            return 0;
        }
        let restored = self.run_restore(&tags, f64::MAX).await;
        let mut held = self.held();
        for tag in &tags {
            held.remove(tag);
        }
        restored
    }

    /// The tag of a token, for restoring it.
    pub fn tag(token: &RedisToken) -> &str {
        &token.tag
    }

    /// Stops taking new messages (warm shutdown, step one).
    pub fn stop_fetching(&self) {
        self.inner.stop_fetching.cancel();
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

    /// Waits (up to 10 s) until every settlement so far is written, then
    /// stops the background loops.
    pub async fn close(&self) {
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

/// Which end of its queue a restored message goes to.
#[derive(Debug, Clone, Copy)]
enum End {
    /// RPUSH: served next (kombu's restore of unacked messages).
    Front,
    /// LPUSH: behind everything waiting (kombu's `requeue`).
    Back,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// Exponential backoff for reconnect loops: 100 ms doubling to 5 s.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_delay(&mut self) -> Duration {
        let delay =
            Duration::from_millis(100 * 2u64.pow(self.attempt.min(6))).min(Duration::from_secs(5));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps; returns false if `stop` fired instead.
    async fn sleep(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

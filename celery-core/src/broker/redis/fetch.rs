//! Getting messages in: the fetch loop on a thread of its own (one
//! `fetch.lua` call takes a batch and records it in kombu's `unacked` in the
//! same atomic step), and one waiter per list that blocks in Redis until the
//! list has something in it, so an idle worker neither polls nor sleeps.

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::debug;

use super::{Backoff, RedisConsumer, RedisToken, UNACKED, UNACKED_INDEX, unix_now};
use crate::redis_connection::ManagedConnection;
use crate::{
    broker::{BrokerError, Delivery},
    protocol::redis_envelope,
};

/// Messages taken per fetch round trip, at most.
const MAX_FETCH: usize = 256;

impl RedisConsumer {
    /// Runs the fetch loop on a thread of its own, with its own connection.
    ///
    /// On the worker's single-threaded event loop the fetcher would be
    /// scheduled behind every task it just handed out, so the next fetch
    /// would start only once the worker ran dry — fetching and running would
    /// take turns. On its own thread the next batch (and its JSON decoding)
    /// is under way while the current one runs.
    pub(super) fn spawn_fetcher(
        self,
        deliveries: mpsc::Sender<Delivery<RedisToken>>,
    ) -> Result<(), BrokerError> {
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

    /// Fetches up to `max` messages atomically (see `fetch.lua`).
    async fn fetch(
        &self,
        connection: &mut ManagedConnection,
        max: usize,
        round: u64,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>, String)>> {
        let lists = super::lists(&self.inner.config.queues, round as usize);
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
        deliveries: mpsc::Sender<Delivery<RedisToken>>,
        mut connection: ManagedConnection,
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
            // `biased`: when a settlement frees a slot after a warm stop began,
            // both branches are ready, and an unbiased select would fetch
            // half the time, taking back the very message just requeued.
            let first = tokio::select! {
                biased;
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
            if stop.is_cancelled() {
                return;
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
                    token: RedisToken { tag, slot },
                };
                if let Err(returned) = deliveries.send(delivery).await {
                    // The worker is gone: give the message back rather than hold it.
                    self.restore_tags(&[returned.0.token.tag]).await;
                }
            }
        }
    }

    /// One waiter per list: blocks in Redis until the list is non-empty,
    /// rings the bell, then waits until the fetcher has drained what it saw.
    pub(super) async fn wait_loop(self, (list, _queue): (String, String)) {
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
}

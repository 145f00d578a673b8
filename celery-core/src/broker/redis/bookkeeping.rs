//! Keeping kombu's books: writing settlements in batches, refreshing the
//! fetch time of what we hold (so no sweep mistakes it for a dead worker's),
//! and kombu's sweep itself, which puts back what a dead worker — ours or a
//! Python one — left in `unacked` (`restore.lua`).

use std::{sync::atomic::Ordering, time::Duration};

use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;
use tracing::info;

use super::{Backoff, RedisConsumer, UNACKED, UNACKED_INDEX, UNACKED_MUTEX, unix_now};
use crate::broker::Settlement;

/// `release_mutex.lua`.
const RELEASE_MUTEX_SCRIPT: &str = include_str!("release_mutex.lua");

/// kombu sweeps for stale messages about this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(100);

impl RedisConsumer {
    /// Writes settlements in batches, each retried until Redis takes it:
    /// one `MULTI ZREM unacked_index … HDEL unacked … EXEC` for the acks and
    /// rejects, one `restore.lua` call for the requeues.
    pub(super) async fn settle_loop(
        self,
        mut settled: mpsc::UnboundedReceiver<(String, Settlement)>,
    ) {
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
            crate::logs::flush();
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
    pub(super) async fn refresh_loop(self) {
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

    pub(super) async fn sweep_loop(self) {
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
    pub(super) async fn run_restore(&self, tags: &[String], cutoff: f64) -> usize {
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
}

/// Which end of its queue a restored message goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    /// RPUSH: served next (kombu's restore of unacked messages).
    Front,
    /// LPUSH: behind everything waiting (kombu's `requeue`).
    Back,
}

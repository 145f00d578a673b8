//! What the worker is doing, for the remote-control commands to report:
//! Celery's `worker_state` (`reserved_requests`, `active_requests`,
//! `total_count`, `revoked`).
//!
//! The worker reports each delivery here as it moves along — received,
//! waiting for its ETA, running, done — through a [`Tracked`] guard that
//! removes it on every way out, including a dropped future. `inspect
//! active` then lists what runs, `stats` counts what ran, and `revoke
//! --terminate` finds the running task to cancel.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{clock::LamportClock, revoked::RevokedSet};
use crate::protocol::TaskMessage;

/// Where a received task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Prefetched, waiting for a concurrency slot (`inspect reserved`).
    Reserved,
    /// Held until its ETA (`inspect scheduled`).
    Scheduled,
    /// Running (`inspect active`).
    Active,
}

/// One received task, as `inspect` describes it.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub message: Arc<TaskMessage>,
    pub queue: String,
    pub redelivered: bool,
    pub phase: Phase,
    /// When it started running (epoch seconds), once it has.
    pub time_start: Option<f64>,
    pub eta: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Entry {
    info: RequestInfo,
    /// Told to stop by `revoke(terminate=True)`.
    terminate: CancellationToken,
    /// Which delivery this is: a redelivered duplicate has the same id.
    serial: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: HashMap<String, Entry>,
    /// Finished tasks by name (`stats.total`).
    totals: BTreeMap<String, u64>,
    revoked: RevokedSet,
}

/// The worker's state, shared by its tasks and its mailbox.
#[derive(Debug)]
pub struct WorkerState {
    pub hostname: String,
    pub clock: LamportClock,
    pub started: Instant,
    /// Task events on (`-E`, `enable_events`) or off.
    pub task_events: AtomicBool,
    processed: AtomicU64,
    next_serial: AtomicU64,
    inner: Mutex<Inner>,
}

impl WorkerState {
    pub fn new(hostname: &str, task_events: bool) -> WorkerState {
        WorkerState {
            hostname: hostname.to_owned(),
            clock: LamportClock::default(),
            started: Instant::now(),
            task_events: AtomicBool::new(task_events),
            processed: AtomicU64::new(0),
            next_serial: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: go on with it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn task_events(&self) -> bool {
        self.task_events.load(Ordering::Relaxed)
    }

    /// Starts tracking a received task.
    pub fn received(
        self: &Arc<Self>,
        message: Arc<TaskMessage>,
        queue: &str,
        redelivered: bool,
    ) -> Tracked {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let id = message.headers.id.clone();
        let entry = Entry {
            info: RequestInfo {
                message,
                queue: queue.to_owned(),
                redelivered,
                phase: Phase::Reserved,
                time_start: None,
                eta: None,
            },
            terminate: CancellationToken::new(),
            serial,
        };
        self.inner().requests.insert(id.clone(), entry);
        Tracked {
            state: self.clone(),
            id,
            serial,
        }
    }

    /// Tasks finished since start.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> BTreeMap<String, u64> {
        self.inner().totals.clone()
    }

    /// The tracked tasks in `phase`.
    pub fn requests(&self, phase: Phase) -> Vec<RequestInfo> {
        self.inner()
            .requests
            .values()
            .filter(|entry| entry.info.phase == phase)
            .map(|entry| entry.info.clone())
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.inner()
            .requests
            .values()
            .filter(|entry| entry.info.phase == Phase::Active)
            .count()
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        self.inner().revoked.contains(id, Instant::now())
    }

    /// Flags `ids` as revoked; with `terminate`, cancels those running and
    /// returns their ids.
    pub fn revoke(&self, ids: &[String], terminate: bool) -> Vec<String> {
        let now = Instant::now();
        let mut inner = self.inner();
        for id in ids {
            inner.revoked.add(id, now);
        }
        if !terminate {
            return Vec::new();
        }
        ids.iter()
            .filter(|id| {
                inner.requests.get(id.as_str()).is_some_and(|entry| {
                    entry.info.phase == Phase::Active && {
                        entry.terminate.cancel();
                        true
                    }
                })
            })
            .cloned()
            .collect()
    }

    /// The revoked ids, oldest first (for mingle and `inspect revoked`).
    pub fn revoked_ids(&self) -> Vec<String> {
        self.inner().revoked.ids(Instant::now())
    }

    /// Adds ids revoked elsewhere (mingle): stamped now, as Celery 5.7's
    /// `merge_revoked` does, since another host's stamps are not comparable.
    pub fn merge_revoked(&self, ids: impl IntoIterator<Item = String>) {
        let now = Instant::now();
        let mut inner = self.inner();
        for id in ids {
            inner.revoked.add(&id, now);
        }
    }

    fn update(&self, id: &str, serial: u64, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.inner().requests.get_mut(id)
            && entry.serial == serial
        {
            change(entry);
        }
    }
}

/// One task's place in [`WorkerState`], removed when dropped.
#[derive(Debug)]
pub struct Tracked {
    state: Arc<WorkerState>,
    id: String,
    serial: u64,
}

impl Tracked {
    /// Waits for its ETA.
    pub fn scheduled(&self, eta: DateTime<Utc>) {
        self.state.update(&self.id, self.serial, |entry| {
            entry.info.phase = Phase::Scheduled;
            entry.info.eta = Some(eta);
        });
    }

    /// Due, waiting for a slot again.
    pub fn reserved(&self) {
        self.state.update(&self.id, self.serial, |entry| {
            entry.info.phase = Phase::Reserved;
        });
    }

    /// Starts running, and is counted in `stats.total` (as Celery counts a
    /// task once it is accepted); the token fires if it is revoked with
    /// `terminate`.
    pub fn started(&self, name: &str) -> CancellationToken {
        self.count(name);
        let mut token = CancellationToken::new();
        let now = crate::protocol::time::epoch_seconds(Utc::now());
        self.state.update(&self.id, self.serial, |entry| {
            entry.info.phase = Phase::Active;
            entry.info.time_start = Some(now);
            token = entry.terminate.clone();
        });
        token
    }

    fn count(&self, name: &str) {
        self.state.processed.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.state.inner();
        match inner.totals.get_mut(name) {
            Some(count) => *count = count.saturating_add(1),
            None => {
                inner.totals.insert(name.to_owned(), 1);
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut inner = self.state.inner();
        if inner
            .requests
            .get(&self.id)
            .is_some_and(|entry| entry.serial == self.serial)
        {
            inner.requests.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SendOptions;

    fn message(id: &str) -> Arc<TaskMessage> {
        let mut message = TaskMessage::new(
            "add",
            vec![1.into(), 2.into()],
            Default::default(),
            &SendOptions::default(),
        );
        message.headers.id = id.to_owned();
        Arc::new(message)
    }

    #[test]
    fn a_task_moves_through_the_phases_and_is_counted_once_done() {
        let state = Arc::new(WorkerState::new("w@h", false));
        let tracked = state.received(message("t1"), "celery", false);
        assert_eq!(state.requests(Phase::Reserved).len(), 1);
        tracked.scheduled(Utc::now());
        assert_eq!(state.requests(Phase::Scheduled).len(), 1);
        tracked.reserved();
        let _terminate = tracked.started("add");
        let active = state.requests(Phase::Active);
        assert_eq!(active.len(), 1);
        assert!(active[0].time_start.is_some());
        drop(tracked);
        assert_eq!(state.active_count(), 0);
        assert_eq!(state.totals().get("add"), Some(&1));
        assert_eq!(state.processed(), 1);
    }

    #[test]
    fn terminate_cancels_only_a_running_task() {
        let state = Arc::new(WorkerState::new("w@h", false));
        let running = state.received(message("run"), "celery", false);
        let token = running.started("add");
        let _waiting = state.received(message("wait"), "celery", false);
        let terminated = state.revoke(&["run".into(), "wait".into(), "gone".into()], true);
        assert_eq!(terminated, ["run"]);
        assert!(token.is_cancelled());
        assert!(state.is_revoked("wait") && state.is_revoked("gone"));
        assert_eq!(state.revoked_ids().len(), 3);
    }

    #[test]
    fn a_duplicate_delivery_does_not_untrack_the_other() {
        let state = Arc::new(WorkerState::new("w@h", false));
        let first = state.received(message("dup"), "celery", false);
        let second = state.received(message("dup"), "celery", true);
        drop(first);
        assert_eq!(state.requests(Phase::Reserved).len(), 1);
        drop(second);
        assert!(state.requests(Phase::Reserved).is_empty());
    }
}

//! Celery Beat, the periodic task scheduler.
//!
//! > 任务调度器 (Celery Beat): Beat 进程会读取配置文件的内容，周期性的将配置中
//! > 到期需要执行的任务发送给任务队列。
//!
//! Beat reads the schedule file and, whenever an entry is due, sends it to its
//! queue as an ordinary task message — the same message `send` builds, plus
//! the header `celery_beat_task: true` (`celery-protocol.md` §D) — so any
//! worker, ours or Python's, runs it.
//!
//! | Python Celery                          | here                                  |
//! |----------------------------------------|---------------------------------------|
//! | `beat_schedule` setting                | [`schedule`], a TOML file             |
//! | `schedule=30.0` / `timedelta`          | `every = 30` ([`Timing::Every`])      |
//! | `crontab(minute=0, hour=9)`            | `cron = "0 9 * * *"` ([`cron`])        |
//! | `beat_cron_starting_deadline`, none    | `catch_up` ([`CatchUp`])              |
//! | `Scheduler.tick()`                     | [`scheduler::plan`] (pure)            |
//! | `PersistentScheduler` (shelve file)    | [`state`] (Redis hash or JSON file)   |
//! | "only run one beat"                    | [`lease`] (leader lease in Redis)     |
//! | `celery beat` / `celery worker -B`     | [`run`]                               |
//!
//! # The tick
//!
//! Each turn of the loop in [`run`]: renew or acquire the lease when it is
//! time; if we lead, read the state, ask [`scheduler::plan`] what is due at
//! `now`, send it (waiting for the broker's confirm), record each slot after
//! its send, then sleep until the next slot or lease action, whichever is
//! first. A standby only does the lease part.
//!
//! # Guarantees
//!
//! * **Each slot is sent once** while things work: slots are fixed instants
//!   (intervals are aligned to the epoch), the state says which was sent
//!   last, and only the lease holder sends.
//! * **Crash between send and state write**: that slot is sent again on
//!   restart. At least once, never lost — the same trade Celery makes for
//!   task messages.
//! * **Missed slots** (beat down, hand-over gap): `catch_up` decides; skips
//!   are always logged.

pub mod cron;
pub mod lease;
pub mod redis_lease;
pub mod schedule;
pub mod scheduler;
pub mod state;

use std::{path::PathBuf, time::Duration};

use chrono::Utc;
use serde_json::Value;
use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::redis_connection::{RedisConnectError, RedisConnection, Role};
use crate::{
    broker::{AnyProducer, BrokerError, Producer, Transport},
    protocol::{SendOptions, TaskMessage},
};
use amqp_connect::{AmqpSettings, ConnectionWatch, Redacted, SecretUrl};
use lease::{Action, Change, Lease};
use redis_lease::RedisLease;
pub use schedule::{CatchUp, Entry, Schedule, ScheduleError, Timing};
use scheduler::{Note, Plan};
use state::{StateError, StateStore};

/// The header that marks a message as sent by beat.
pub const BEAT_HEADER: &str = "celery_beat_task";

/// The longest beat sleeps without looking at the clock again, so a wall
/// clock that jumps (NTP, a suspended VM) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How long to wait after a broker or state error before the next attempt.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Where the lease lives when the broker is not Redis.
pub const DEFAULT_LEASE_REDIS: &str = "redis://127.0.0.1:6379/7";

/// Everything beat needs.
#[derive(Debug, Clone)]
pub struct BeatConfig {
    pub schedule: Schedule,
    pub broker_url: SecretUrl,
    /// Connection settings for an AMQP broker (its URL is `broker_url`).
    pub amqp: AmqpSettings,
    /// Redis holding the lease (and, without `state_file`, the state).
    pub lease_redis: SecretUrl,
    pub lease_ttl: Duration,
    /// Keep the state in this JSON file rather than in Redis.
    pub state_file: Option<PathBuf>,
    /// Names this beat in the lease value (`<hostname>:<pid>:<random>`).
    pub hostname: String,
}

impl BeatConfig {
    /// The lease Redis the issue asks for: the broker if it is Redis, else
    /// the blog's Redis.
    pub fn default_lease_redis(broker_url: &str) -> SecretUrl {
        match Transport::of(broker_url) {
            Ok(Transport::Redis) => SecretUrl::from(broker_url),
            _ => SecretUrl::from(DEFAULT_LEASE_REDIS),
        }
    }

    pub fn lease_key(&self) -> String {
        format!("beat:{}:lease", self.schedule.name)
    }

    pub fn state_key(&self) -> String {
        format!("beat:{}:state", self.schedule.name)
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BeatError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    LeaseRedis(#[from] RedisConnectError),
    #[error("--lease-ttl must be at least 0.5 seconds, got {0}")]
    LeaseTtl(f64),
}

/// Runs beat until `shutdown` fires, then gives up the lease.
pub async fn run(config: BeatConfig, shutdown: CancellationToken) -> Result<(), BeatError> {
    if config.lease_ttl < Duration::from_millis(500) {
        return Err(BeatError::LeaseTtl(config.lease_ttl.as_secs_f64()));
    }
    let schedule = &config.schedule;
    let redis = RedisConnection::open(
        &config.lease_redis,
        Role::BEAT_LEASE,
        &(&config.amqp).into(),
    )
    .await?;
    let mut producer = Some(AnyProducer::connect(&config.broker_url, config.amqp.clone()).await?);
    // Sending keeps failing while the broker is away: said once, not per tick.
    let broker_watch =
        ConnectionWatch::new(format!("beat's broker at {}", Redacted(&config.broker_url)));
    let mut store = match &config.state_file {
        Some(path) => StateStore::File { path: path.clone() },
        None => StateStore::Redis {
            connection: redis.manager(),
            key: config.state_key(),
            // As the lease's commands: an outage must not freeze the tick.
            timeout: config.lease_ttl / 4,
        },
    };
    let holder = format!(
        "{}:{}:{}",
        config.hostname,
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut redis_lease =
        RedisLease::new(redis.clone(), config.lease_key(), holder, config.lease_ttl);
    let ttl_ms = u64::try_from(config.lease_ttl.as_millis()).unwrap_or(u64::MAX);

    info!("beat: Starting...");
    info!(
        schedule = %schedule.name,
        entries = schedule.entries.len(),
        broker = %Redacted(&config.broker_url),
        lease = %redis_lease.key(),
        state = %store.describe(),
        catch_up = ?schedule.catch_up,
        "beat: ready"
    );
    for entry in &schedule.entries {
        info!(
            "beat: entry {} ({}) {} → queue '{}'",
            entry.name, entry.task, entry.timing, entry.queue
        );
    }

    let mut lease = Lease::new(config.lease_ttl, Instant::now().into_std());
    let mut said_standby = false;
    loop {
        // 1. The lease: expire, acquire or renew as the machine asks.
        let now = Instant::now().into_std();
        let mut changes = Vec::new();
        changes.extend(lease.expire(now));
        match lease.due(now) {
            Some(Action::Acquire) => {
                let sent = Instant::now().into_std();
                let answer = redis_lease.acquire(ttl_ms).await;
                changes.extend(lease.acquired(sent, Instant::now().into_std(), answer));
                if !lease.is_leader() && !said_standby {
                    info!(
                        lease = %redis_lease.key(),
                        "beat: another beat holds the lease; standing by"
                    );
                    said_standby = true;
                }
            }
            Some(Action::Renew) => {
                let sent = Instant::now().into_std();
                let answer = redis_lease.renew(ttl_ms).await;
                changes.extend(lease.renewed(sent, Instant::now().into_std(), answer));
            }
            None => {}
        }
        for change in changes {
            log_change(change, &redis_lease, config.lease_ttl);
            said_standby = change == Change::BecameLeader;
        }

        // 2. If we lead: send what is due.
        let mut wake = Instant::from_std(lease.wake_at());
        if lease.may_send(Instant::now().into_std()) {
            match tick(&config, &mut store, &mut producer, &lease).await {
                Ok(next) => {
                    broker_watch.ok();
                    if let Some(next) = next {
                        wake = wake.min(next);
                    }
                }
                Err(error) => {
                    // An outage is said once, by its watch; anything else
                    // (a refusal, a bad state file) every time.
                    match &error {
                        BeatError::Broker(broker) if broker.is_connection_error() => {
                            broker_watch.lost(&error)
                        }
                        BeatError::State(state) if state.is_connection_error() => {
                            redis.watch().lost(&error)
                        }
                        _ => error!("beat: {error}; retrying in {}s", ERROR_BACKOFF.as_secs()),
                    }
                    wake = wake.min(Instant::now() + ERROR_BACKOFF);
                }
            }
        }

        // 3. Sleep until the next slot or lease action.
        let wake = wake.min(Instant::now() + MAX_SLEEP);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
        }
    }

    if lease.is_leader() && redis_lease.release().await {
        info!(lease = %redis_lease.key(), "beat: released the lease");
    }
    if let Some(producer) = producer {
        producer.close().await;
    }
    info!("beat: stopped");
    Ok(())
}

/// One leader tick: plan, send, record. Returns when to tick next.
async fn tick(
    config: &BeatConfig,
    store: &mut StateStore,
    producer: &mut Option<AnyProducer>,
    lease: &Lease,
) -> Result<Option<Instant>, BeatError> {
    let schedule = &config.schedule;
    // Read the state every tick: after a hand-over it is the previous
    // leader's, and the store, not our memory, is the truth.
    let state = store.load().await?;
    let now = Utc::now();
    let plan: Plan = scheduler::plan(schedule, &state, now);
    for note in &plan.notes {
        log_note(schedule, note);
    }
    for (index, slot) in &plan.advance {
        store.save(&schedule.entries[*index].name, *slot).await?;
    }
    for due in &plan.send {
        // The fence: never start a send after our lease may have expired,
        // nor finish one (a send may wait out a broker outage): a standby
        // may be leading by then.
        let now = Instant::now();
        let Some(fence) = lease
            .sends_until()
            .map(Instant::from_std)
            .filter(|fence| now < *fence)
        else {
            warn!("beat: lease about to expire; not sending until it is renewed");
            return Ok(Some(now));
        };
        let entry = &schedule.entries[due.entry];
        let message = beat_message(entry);
        info!(
            slot = %due.slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            id = %message.headers.id,
            queue = %entry.queue,
            "Scheduler: Sending due task {} ({})",
            entry.name,
            entry.task
        );
        let sent = {
            let sending = async {
                match producer.as_mut() {
                    Some(producer) => send(producer, &message, &entry.queue).await,
                    None => {
                        match AnyProducer::connect(&config.broker_url, config.amqp.clone()).await {
                            Ok(new) => send(producer.insert(new), &message, &entry.queue).await,
                            Err(error) => Err(error),
                        }
                    }
                }
            };
            tokio::time::timeout_at(fence, sending)
                .await
                .unwrap_or(Err(BrokerError::Unfinished {
                    what: "beat's send, as its lease ran out,",
                }))
        };
        if let Err(error) = sent {
            // Reconnect next time; the slot stays due (not recorded).
            if let Some(old) = producer.take() {
                old.close().await;
            }
            return Err(error.into());
        }
        store.save(&entry.name, due.slot).await?;
    }
    let next = plan.next_wake.map(|slot| {
        let delay = (slot - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        // A millisecond late rather than early: a timer that fires before
        // the slot would find nothing due and spin.
        Instant::now() + delay + Duration::from_millis(1)
    });
    Ok(next)
}

/// Sends and waits for the broker to take responsibility (publisher
/// confirm on AMQP): the state must not say "sent" for a message that
/// could still be lost.
async fn send(
    producer: &mut AnyProducer,
    message: &TaskMessage,
    queue: &str,
) -> Result<(), BrokerError> {
    producer.send(message, queue).await?;
    producer.flush().await
}

/// The task message for one entry: `apply_async(args, kwargs, **options)`
/// plus beat's header.
pub fn beat_message(entry: &Entry) -> TaskMessage {
    let options = SendOptions {
        // The schedule file keeps `expires` within ten years, so this fits.
        expires: entry
            .expires
            .and_then(|expires| crate::protocol::time::after(Utc::now(), expires)),
        ..SendOptions::default()
    };
    let mut message = TaskMessage::new(
        &entry.task,
        entry.args.clone(),
        entry.kwargs.clone(),
        &options,
    );
    message
        .headers
        .extra
        .insert(BEAT_HEADER.to_owned(), Value::Bool(true));
    // The schedule keeps args as a list, so Celery's beat shows a list here
    // (`['13800000000', 'beat']`), where `delay()` shows a tuple.
    message.headers.argsrepr = Some(crate::protocol::pyrepr::repr(&Value::Array(
        entry.args.clone(),
    )));
    message
}

fn log_change(change: Change, lease: &RedisLease, ttl: Duration) {
    match change {
        Change::BecameLeader => info!(
            lease = %lease.key(),
            holder = %lease.holder(),
            ttl = ttl.as_secs_f64(),
            "beat: acquired the lease; this beat now sends the schedule"
        ),
        Change::LostToAnother => warn!(
            lease = %lease.key(),
            "beat: another beat holds the lease now; stopped sending, standing by"
        ),
        Change::Expired => warn!(
            lease = %lease.key(),
            "beat: could not renew the lease in time; stopped sending, standing by"
        ),
    }
}

fn log_note(schedule: &Schedule, note: &Note) {
    let mode = match schedule.catch_up {
        CatchUp::Once => "once",
        CatchUp::None => "none",
        CatchUp::All => "all",
    };
    match note {
        Note::New { entry } => {
            let entry = &schedule.entries[*entry];
            info!(
                "Scheduler: new entry {} ({}): first run at its next slot",
                entry.name, entry.task
            );
        }
        Note::Folded { entry, count } => warn!(
            "Scheduler: {}: {count} slots were missed; sending one (catch_up = \"{mode}\")",
            schedule.entries[*entry].name
        ),
        Note::Skipped {
            entry,
            count,
            first,
            last,
        } => warn!(
            "Scheduler: {}: skipping {count} missed slot(s) from {} to {} (catch_up = \"{mode}\")",
            schedule.entries[*entry].name,
            first.to_rfc3339(),
            last.to_rfc3339()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_beat_message_is_a_task_message_with_the_beat_header() {
        let text = "[entries.report]\ntask = \"SMS\"\nargs = [\"13800000000\", \"beat\"]\nevery = 2\nexpires = 60\n";
        let schedule = schedule::parse(text, "t.toml", "t").unwrap();
        let message = beat_message(&schedule.entries[0]);
        assert_eq!(message.headers.task, "SMS");
        assert_eq!(message.headers.extra[BEAT_HEADER], Value::Bool(true));
        assert_eq!(
            message.headers.argsrepr.as_deref(),
            Some("['13800000000', 'beat']")
        );
        assert!(message.expires().unwrap() > Utc::now() + chrono::Duration::seconds(59));
        assert_eq!(message.headers_value()[BEAT_HEADER], Value::Bool(true));
    }
}

//! The worker's side of remote control and events: one loop that answers
//! requests from its mailbox, sends a heartbeat every two seconds, and
//! publishes task events in batches.
//!
//! [`start`] opens the mailbox, syncs revoked ids with the workers already
//! running (mingle), announces `worker-online` and spawns the loop;
//! [`Control::stop`] announces `worker-offline` and closes it. The worker
//! reports its tasks through [`Control::state`] and [`Control::events`].

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    client,
    commands::{self, Outcome, WorkerInfo},
    events::{self, HEARTBEAT_SECONDS, Load, Sender, TaskEvent},
    mailbox::{Listen, Mailbox, Outgoing},
    request::Request,
    rusage::load_average,
    state::{Phase, WorkerState},
};
use crate::{
    backend::{ResultBackend, ResultMeta, TaskState},
    broker::BrokerError,
    control::transport::MailboxTransport,
    protocol::time::epoch_seconds,
};

/// Task events waiting to be published, at most; beyond it they are
/// dropped rather than slow the tasks down.
const TASK_EVENT_BACKLOG: usize = 16_384;
/// Task events per `task.multi` message, at most.
const BATCH: usize = 256;
/// How long task events wait for more to share their message, and how
/// often the loop wakes for them. Sent one message per wake-up, a busy
/// worker's events needed more round trips than the mailbox connection
/// could make, and a fifth of them were dropped (`bench/events.sh`, 50,000
/// tasks); a few milliseconds of delay is nothing to a monitor.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How long mingle waits for each neighbour's reply (Celery's 1 s).
const MINGLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How the worker's remote control is set up.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub hostname: String,
    /// Task events from the start (`-E`).
    pub task_events: bool,
    /// Sync revoked ids with running workers at start (Celery's mingle).
    pub mingle: bool,
    pub info: WorkerInfo,
}

/// Publishes task events, when they are on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    state: Arc<WorkerState>,
    sender: Arc<Sender>,
    queue: mpsc::Sender<String>,
}

impl Events {
    /// Sends `event` about task `uuid`, if task events are on. Never waits:
    /// a backlog the broker cannot take is dropped.
    pub fn task(&self, uuid: &str, event: TaskEvent<'_>) {
        if !self.state.task_events() {
            return;
        }
        let body = event.to_json(
            uuid,
            &self.sender,
            self.state.clock.forward(),
            epoch_seconds(chrono::Utc::now()),
        );
        let _ = self.queue.try_send(body);
    }
}

/// The running remote control of one worker.
#[derive(Debug)]
pub struct Control {
    state: Arc<WorkerState>,
    events: Events,
    stop: CancellationToken,
    serving: JoinHandle<()>,
}

impl Control {
    pub fn state(&self) -> &Arc<WorkerState> {
        &self.state
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Sends `worker-offline` and closes the mailbox.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.serving).await;
    }
}

/// Opens the mailbox and starts answering. `shutdown` is fired by a
/// `shutdown` command (a warm shutdown, as Celery's).
pub async fn start<B: MailboxTransport>(
    url: &str,
    settings: amqp_connect::AmqpSettings,
    config: ControlConfig,
    backend: Option<ResultBackend>,
    shutdown: CancellationToken,
) -> Result<Control, BrokerError> {
    let listen = Listen::Requests {
        hostname: config.hostname.clone(),
    };
    let mailbox = match B::mailbox(url, settings.clone(), listen).await {
        Err(BrokerError::NodeNameTaken { hostname }) => {
            // Tasks still run; only remote control is lost, and said so.
            warn!(
                "another worker already runs as {hostname} on this broker, so this one cannot answer remote control (inspect, revoke): give each worker its own name with -n NAME@%h"
            );
            B::mailbox(url, settings.clone(), Listen::Nothing).await?
        }
        other => other?,
    };
    let state = Arc::new(WorkerState::new(&config.hostname, config.task_events));
    if config.mingle {
        mingle::<B>(url, settings, &state).await;
    }
    let sender = Arc::new(Sender::this_process(&config.hostname));
    let (queue, task_events) = mpsc::channel(TASK_EVENT_BACKLOG);
    let events = Events {
        state: state.clone(),
        sender: sender.clone(),
        queue,
    };
    let stop = CancellationToken::new();
    let server = Server {
        state: state.clone(),
        sender,
        info: config.info,
        backend,
        shutdown,
    };
    let serving = tokio::spawn(server.serve(mailbox, task_events, stop.clone()));
    Ok(Control {
        state,
        events,
        stop,
        serving,
    })
}

/// Celery's mingle: ask the running workers for the ids they hold revoked,
/// so a task revoked while this worker was down is still refused here.
async fn mingle<B: MailboxTransport>(
    url: &str,
    settings: amqp_connect::AmqpSettings,
    state: &WorkerState,
) {
    info!("mingle: searching for neighbors");
    let hello = Request::new(
        "hello",
        client::arguments([
            ("from_node", json!(state.hostname)),
            ("revoked", json!(state.revoked_ids())),
        ]),
    );
    let replies =
        match client::broadcast::<B>(url, settings, hello, MINGLE_TIMEOUT, &state.clock).await {
            Ok(replies) => replies,
            Err(error) => {
                warn!("mingle: could not ask the other workers: {error}");
                return;
            }
        };
    let mut synced = 0;
    for (node, reply) in replies {
        if node == state.hostname {
            continue;
        }
        if let Some(clock) = reply.get("clock").and_then(Value::as_u64) {
            state.clock.adjust(clock);
        }
        if let Some(Value::Array(ids)) = reply.get("revoked") {
            state.merge_revoked(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)));
        }
        synced += 1;
    }
    if synced == 0 {
        info!("mingle: all alone");
    } else {
        info!("mingle: sync with {synced} nodes");
    }
}

struct Server {
    state: Arc<WorkerState>,
    sender: Arc<Sender>,
    info: WorkerInfo,
    backend: Option<ResultBackend>,
    shutdown: CancellationToken,
}

impl Server {
    async fn serve(
        self,
        mut mailbox: Mailbox,
        mut task_events: mpsc::Receiver<String>,
        stop: CancellationToken,
    ) {
        self.worker_event(&mailbox, "worker-online", HEARTBEAT_SECONDS)
            .await;
        let every = Duration::from_secs_f64(HEARTBEAT_SECONDS);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut batch = Vec::with_capacity(BATCH);
        // Set once an event waits: until then the loop sleeps, and events
        // queue up in the channel without waking it.
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                received = mailbox.incoming.recv() => match received {
                    Some(message) => {
                        self.state.clock.adjust(message.clock);
                        if let Some(request) = Request::parse(&message.body) {
                            self.answer(&mailbox, &request).await;
                        }
                    }
                    None => break,
                },
                _ = heartbeat.tick() => self.worker_event(&mailbox, "worker-heartbeat", HEARTBEAT_SECONDS).await,
                () = flush => {
                    self.publish_waiting(&mailbox, &mut task_events, &mut batch);
                    flush_at = None;
                }
                first = task_events.recv(), if flush_at.is_none() => match first {
                    Some(event) => {
                        batch.push(event);
                        flush_at = Some(tokio::time::Instant::now() + FLUSH_EVERY);
                    }
                    None => break,
                },
            }
        }
        // What was already queued still goes out, then the goodbye.
        self.publish_waiting(&mailbox, &mut task_events, &mut batch);
        self.worker_event(&mailbox, "worker-offline", HEARTBEAT_SECONDS)
            .await;
        mailbox.close().await;
    }

    /// Publishes every task event waiting, [`BATCH`] to a message.
    fn publish_waiting(
        &self,
        mailbox: &Mailbox,
        task_events: &mut mpsc::Receiver<String>,
        batch: &mut Vec<String>,
    ) {
        while let Ok(event) = task_events.try_recv() {
            batch.push(event);
            if batch.len() == BATCH {
                publish_task_events(mailbox, &self.sender.hostname, batch);
            }
        }
        publish_task_events(mailbox, &self.sender.hostname, batch);
    }

    async fn answer(&self, mailbox: &Mailbox, request: &Request) {
        if !request.is_for(&self.state.hostname) {
            return;
        }
        let reply = match commands::handle(request, &self.info, &self.state) {
            Outcome::Reply(reply) => reply,
            Outcome::Revoke { ids, reply } => {
                info!("Tasks flagged as revoked: {}", ids.join(", "));
                self.store_revoked(&ids).await;
                reply
            }
            Outcome::Heartbeat => {
                // Celery answers `heartbeat` with freq 5.
                self.worker_event(mailbox, "worker-heartbeat", 5.0).await;
                Value::Null
            }
            Outcome::Shutdown => {
                warn!("Got shutdown from remote");
                self.shutdown.cancel();
                return;
            }
        };
        if let Some((to, ticket)) = request.reply_address() {
            let reply = Outgoing::Reply {
                to: to.clone(),
                ticket: ticket.to_owned(),
                clock: self.state.clock.forward(),
                body: json!({ self.state.hostname.clone(): reply }),
            };
            let _ = mailbox.outgoing.send(reply).await;
        }
    }

    /// Celery's `_revoke`: a revoked task that no worker has started is
    /// REVOKED in the result backend at once, so `AsyncResult.get()` does
    /// not wait for a task that will never run.
    async fn store_revoked(&self, ids: &[String]) {
        let Some(backend) = &self.backend else {
            return;
        };
        let running: Vec<String> = self
            .state
            .requests(Phase::Active)
            .iter()
            .map(|request| request.message.headers.id.clone())
            .collect();
        for id in ids.iter().filter(|id| !running.contains(id)) {
            let unstarted = match backend.get(id).await {
                Ok(None) => true,
                Ok(Some(stored)) => matches!(
                    stored.status,
                    TaskState::Pending
                        | TaskState::Received
                        | TaskState::Retry
                        | TaskState::Rejected
                ),
                Err(error) => {
                    warn!("Failed to mark task {id} as revoked in backend: {error}");
                    false
                }
            };
            if unstarted
                && let Err(error) = backend.store(&ResultMeta::revoked(id, "revoked")).await
            {
                warn!("Failed to mark task {id} as revoked in backend: {error}");
            }
        }
    }

    async fn worker_event(&self, mailbox: &Mailbox, kind: &str, freq: f64) {
        let load = Load {
            active: self.state.active_count(),
            processed: self.state.processed(),
            loadavg: load_average(),
        };
        let event = self.sender.event(
            kind,
            self.state.clock.forward(),
            epoch_seconds(chrono::Utc::now()),
            events::worker_fields(load, freq),
        );
        let message = Outgoing::Event {
            routing_key: events::routing_key(kind),
            body: event.to_string().into_bytes(),
            hostname: self.sender.hostname.clone(),
        };
        let _ = mailbox.outgoing.send(message).await;
    }
}

/// Task events go out as one JSON list on `task.multi` — even a single
/// one, as Celery 5.7's buffered dispatcher sends them (seen on RabbitMQ).
fn publish_task_events(mailbox: &Mailbox, hostname: &str, batch: &mut Vec<String>) {
    if batch.is_empty() {
        return;
    }
    let mut body =
        String::with_capacity(batch.iter().map(|event| event.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (n, event) in batch.drain(..).enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&event);
    }
    body.push(']');
    // Never wait on the broker here: a full queue drops the batch.
    let _ = mailbox.outgoing.try_send(Outgoing::Event {
        routing_key: "task.multi".to_owned(),
        body: body.into_bytes(),
        hostname: hostname.to_owned(),
    });
}

//! What every task run of a worker shares — its consumer, registry, result
//! backend, publisher, limits and state — and storing a task's result,
//! which both the run (`execute.rs`) and what a finished task sets off
//! (`canvas.rs`) do.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::publisher::Publisher;
use crate::{
    backend::{ResultBackend, ResultMeta},
    broker::{Broker, Consumer, Settlement},
    control::{Events, state::WorkerState},
    protocol::TaskMessage,
    registry::Registry,
};

/// A broker's delivery token.
pub type TokenOf<B> = <<B as Broker>::Consumer as Consumer>::Token;

/// What every task run shares.
pub struct WorkerContext<B: Broker> {
    pub consumer: B::Consumer,
    pub registry: Registry,
    pub backend: Option<ResultBackend>,
    /// Publishes retries and follow-ups (same broker as the consumer),
    /// grouped so that tasks finishing together share one confirm wait.
    pub publisher: Publisher,
    /// Tasks running at once, at most (`-c`).
    pub concurrency: Arc<Semaphore>,
    /// Blocking tasks running at once, each on a thread of its own.
    pub blocking_pool: Arc<Semaphore>,
    /// Fired at warm shutdown: tasks still waiting for their ETA give up.
    pub stop_waiting: CancellationToken,
    /// Where a callback or chain step goes when its options name no queue
    /// (Celery's `task_default_queue`).
    pub default_queue: String,
    /// What `inspect` reports, and the revoked ids.
    pub state: Arc<WorkerState>,
    /// Task events, when they are on.
    pub events: Events,
}

/// Stores a result unless the task asked not to (`ignore_result`).
pub(super) async fn store_unless_ignored(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    meta: &ResultMeta,
) -> Settlement {
    if message.headers.ignore_result == Some(true) {
        return Settlement::Ack;
    }
    store(context, meta).await
}

/// How long a result waits for the backend to come back before its task is
/// requeued, and how often it tries meanwhile.
const STORE_PATIENCE: Duration = Duration::from_secs(5);
const STORE_RETRY_EVERY: Duration = Duration::from_millis(250);

/// Stores a result. If the backend cannot take it, the message is requeued:
/// acking it would lose the result for good.
///
/// While the backend is away (its outage is logged once, by its watch), the
/// store is tried again for [`STORE_PATIENCE`] first: requeueing at once
/// would have the task fetched and run again straight away, over and over,
/// for as long as the outage lasts.
pub(super) async fn store(context: &WorkerContext<impl Broker>, meta: &ResultMeta) -> Settlement {
    let Some(backend) = &context.backend else {
        return Settlement::Ack;
    };
    let give_up = tokio::time::Instant::now() + STORE_PATIENCE;
    loop {
        // Boxed: a Redis script call is a large future, and inlining it would
        // make every task's future (copied on each spawn) that much larger.
        match Box::pin(backend.store(meta)).await {
            Ok(_) => return Settlement::Ack,
            Err(error) if error.is_connection_error() => {
                if tokio::time::Instant::now() >= give_up {
                    debug!(task_id = %meta.task_id, "{error}; requeueing the task");
                    return Settlement::Requeue;
                }
                tokio::time::sleep(STORE_RETRY_EVERY).await;
            }
            Err(error) => {
                warn!(task_id = %meta.task_id, "{error}; requeueing the task");
                return Settlement::Requeue;
            }
        }
    }
}

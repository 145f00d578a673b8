//! The worker's producer, shared by every running task: retries, chain
//! steps, callbacks and chord bodies all go out through it.
//!
//! Publishing is only done once the broker confirmed it (a task whose
//! follow-up was not taken must not be acked), and a confirm takes a round
//! trip. With the producer behind a lock held across that wait, each
//! task's follow-up waited for the previous task's confirm: the worker
//! published at one round trip per message, however many tasks ran at once.
//!
//! So the producer lives in a task of its own, and publishes in groups (a
//! group commit): it takes every request waiting, sends them all, waits for
//! one confirm of the lot, and answers each. While it waits, new requests
//! gather for the next group. One task alone still waits one round trip;
//! 256 tasks finishing together share one.

use std::sync::Arc;

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    broker::{BrokerError, Producer},
    protocol::TaskMessage,
};

/// The most messages sent before one confirm is awaited: the size of the
/// producer's confirm window (`MAX_IN_FLIGHT` on AMQP) would do, a
/// thousand keeps a group's wait short.
const MAX_GROUP: usize = 1000;

/// A group that could not be published: every request in it gets this.
pub(crate) type PublishResult = Result<(), Arc<BrokerError>>;

struct Request {
    messages: Vec<(TaskMessage, String)>,
    done: oneshot::Sender<PublishResult>,
}

/// A handle on the publishing task. Cheap to share (`&Publisher`).
#[derive(Debug)]
pub(crate) struct Publisher {
    requests: mpsc::UnboundedSender<Request>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts the publishing task with `producer`.
    pub(crate) fn start<P: Producer>(producer: P) -> Publisher {
        // Unbounded, yet bounded in practice: each request comes from a
        // running task that waits for its answer, so there are never more
        // than the worker's concurrency waiting.
        let (requests, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(producer, receiver));
        Publisher { requests, task }
    }

    /// Publishes `messages` (each with its queue) and returns once the
    /// broker has taken them all.
    pub(crate) async fn publish(&self, messages: Vec<(TaskMessage, String)>) -> PublishResult {
        let (done, answer) = oneshot::channel();
        let stopped = || {
            Arc::new(BrokerError::Unfinished {
                what: "publishing (the worker is stopping)",
            })
        };
        self.requests
            .send(Request { messages, done })
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Publishes what was asked, then closes the producer.
    pub(crate) async fn close(self) {
        drop(self.requests);
        let _ = self.task.await;
    }
}

async fn run<P: Producer>(mut producer: P, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut group = Vec::new();
    while let Some(first) = requests.recv().await {
        group.push(first);
        let mut count = group[0].messages.len();
        while count < MAX_GROUP
            && let Ok(more) = requests.try_recv()
        {
            count = count.saturating_add(more.messages.len());
            group.push(more);
        }
        let outcome = send_all(&mut producer, &group).await.map_err(Arc::new);
        for request in group.drain(..) {
            // A requester that gave up (its task was revoked) does not mind.
            let _ = request.done.send(outcome.clone());
        }
    }
    producer.close().await;
}

async fn send_all<P: Producer>(producer: &mut P, group: &[Request]) -> Result<(), BrokerError> {
    for request in group {
        for (message, queue) in &request.messages {
            producer.send(message, queue).await?;
        }
    }
    producer.flush().await
}

//! The connection a worker's remote control and events travel on, as one
//! handle whatever the broker: a queue of messages to send, a queue of
//! messages received.
//!
//! kombu calls it a *pidbox*. Each transport opens its own, in its own way
//! (`control/transport/redis.rs`: Redis pub/sub and lists;
//! `control/transport/amqp.rs`: exchanges and exclusive queues), keeps it open
//! across broker restarts, and hands over the same [`Incoming`] and takes the
//! same [`Outgoing`]. Monitoring is best effort, as in Celery: while the
//! broker is away, events and replies are dropped, never queued without
//! bound, and never hold up a task.

use std::time::Duration;

use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use super::request::ReplyTo;

/// What the mailbox listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A worker's mailbox: requests broadcast to every node, kept for `hostname`.
    Requests { hostname: String },
    /// A client's reply queue `<oid>.reply.celery.pidbox`.
    Replies { oid: String },
    /// Nothing: only send (events of a worker whose name another one holds).
    Nothing,
}

/// A message received: its JSON body and the kombu headers that matter.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub body: Value,
    /// The sender's Lamport clock (0 if it sent none).
    pub clock: u64,
    /// Which request a reply answers.
    pub ticket: Option<String>,
}

/// A message to send.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A request to every worker (on the `celery.pidbox` fanout).
    /// `expires`: when the sender stops listening (epoch seconds).
    Request {
        body: Value,
        clock: u64,
        expires: f64,
    },
    /// A worker's reply to one request.
    Reply {
        to: ReplyTo,
        ticket: String,
        clock: u64,
        body: Value,
    },
    /// An event, or a JSON list of them (`task.multi`), on `celeryev`.
    Event {
        routing_key: String,
        body: Vec<u8>,
        hostname: String,
    },
}

/// Messages waiting to be sent, at most: beyond it, events are dropped.
pub const OUTGOING_CAPACITY: usize = 4096;

/// An open mailbox.
#[derive(Debug)]
pub struct Mailbox {
    pub outgoing: mpsc::Sender<Outgoing>,
    pub incoming: mpsc::Receiver<Incoming>,
    /// The transport's task: it ends once `outgoing` is closed and sent.
    pub(crate) running: JoinHandle<()>,
}

impl Mailbox {
    /// Sends what is queued (a `worker-offline`, say), then disconnects;
    /// bounded, since a broker that is away cannot take it anyway.
    pub async fn close(self) {
        let Mailbox {
            outgoing,
            incoming,
            running,
        } = self;
        drop(outgoing);
        drop(incoming);
        let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
    }
}

//! The RPC client: many calls in flight over one callback queue.
//!
//! ```python
//! result = self.channel.queue_declare(queue='', exclusive=True)
//! self.callback_queue = result.method.queue
//! ...
//! self.corr_id = str(uuid.uuid4())
//! self.channel.basic_publish(exchange='', routing_key='rpc_queue',
//!     properties=pika.BasicProperties(reply_to=self.callback_queue, correlation_id=self.corr_id),
//!     body=str(n))
//! while self.response is None:
//!     self.connection.process_data_events(time_limit=None)
//! ```
//!
//! The Python client keeps one `corr_id` and blocks until its answer comes.
//! [`RpcClient`] keeps a table of calls waiting, keyed by correlation id: a
//! background task reads the callback queue and hands each reply to the call
//! that owns its id, so any number of calls can share the one queue. A reply
//! nobody is waiting for — a late answer to a call that timed out, or a
//! stray — is dropped, as the tutorial says it should be.
//!
//! Two things the tutorial leaves to the reader:
//!
//! * **No server.** The request is published `mandatory` with a publisher
//!   confirm, so "no queue called rpc_queue" comes back at once, and a call
//!   nobody answers ends after `timeout`. The request carries that timeout
//!   as its `expiration`, so it does not wait in the queue for a server that
//!   starts later, to be answered to a caller that has long gone.
//! * **Direct reply-to.** With [`ReplyQueue::DirectReplyTo`] replies come
//!   through RabbitMQ's pseudo-queue `amq.rabbitmq.reply-to` instead of a
//!   declared queue: nothing to declare or delete, and the reply skips a
//!   queue on the way back. It must be consumed, in no-ack mode, on the very
//!   channel that publishes the requests — which is why one channel does both.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_lite::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, Consumer,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::FieldTable,
};
use shared::{AmqpError, publisher::open_confirmed_channel};
use thiserror::Error;
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::debug;

use super::RPC_QUEUE;

/// RabbitMQ's pseudo-queue for direct reply-to.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Where replies come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyQueue {
    /// A server-named exclusive queue, as in the tutorial.
    Exclusive,
    /// `amq.rabbitmq.reply-to`: no queue at all.
    DirectReplyTo,
}

/// Why a call got no answer.
#[derive(Debug, Error)]
pub enum RpcError {
    #[error(
        "no RPC server answered on '{queue}' within {seconds} s; start one (cargo run -p tutorials --bin rpc_server) or wait longer with --timeout"
    )]
    NoReply { queue: String, seconds: f64 },

    #[error(
        "there is no queue '{queue}' to send the request to: no RPC server has declared it yet; start one first (cargo run -p tutorials --bin rpc_server)"
    )]
    NoServerQueue { queue: String },

    #[error(
        "the RPC server replied {reply:?}, which is not a whole number; is something other than a Fibonacci server consuming 'rpc_queue'?"
    )]
    BadReply { reply: String },

    #[error(
        "the connection to RabbitMQ was lost while the call waited: its reply cannot arrive; call again"
    )]
    RepliesLost,

    #[error(transparent)]
    Amqp(#[from] AmqpError),
}

/// Calls waiting for their reply, by correlation id.
#[derive(Debug, Default)]
struct Calls {
    waiting: HashMap<String, oneshot::Sender<Vec<u8>>>,
    /// The reply reader has stopped (the connection was lost): no reply can
    /// arrive any more, so a new call fails at once instead of at its timeout.
    closed: bool,
}

type Waiting = Arc<Mutex<Calls>>;

/// A Fibonacci RPC client; cheap to share between tasks (`&self` calls).
#[derive(Debug)]
pub struct RpcClient {
    channel: Channel,
    reply_to: String,
    waiting: Waiting,
    timeout: Duration,
    replies: JoinHandle<()>,
}

impl RpcClient {
    /// Opens a channel, sets up the reply queue and starts reading replies.
    pub async fn open(
        connection: &Connection,
        reply_queue: ReplyQueue,
        timeout: Duration,
    ) -> Result<Self, AmqpError> {
        let channel = open_confirmed_channel(connection).await?;
        let reply_to = match reply_queue {
            ReplyQueue::DirectReplyTo => DIRECT_REPLY_TO.to_owned(),
            ReplyQueue::Exclusive => channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::broker("declaring the callback queue"))?
                .name()
                .to_string(),
        };
        let consumer = channel
            .basic_consume(
                reply_to.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::broker("consuming the callback queue"))?;
        let waiting = Waiting::default();
        let replies = tokio::spawn(hand_out_replies(consumer, Arc::clone(&waiting)));
        Ok(Self {
            channel,
            reply_to,
            waiting,
            timeout,
            replies,
        })
    }

    /// Where the replies come back: the callback queue's name, or
    /// `amq.rabbitmq.reply-to`.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    /// `fibonacci_rpc.call(n)`: sends the request and waits for its reply.
    pub async fn call(&self, n: u64) -> Result<u64, RpcError> {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let (reply_sender, reply) = oneshot::channel();
        // Registered before sending: a fast server may answer before
        // `basic_publish` has even returned.
        {
            let mut calls = lock(&self.waiting);
            if calls.closed {
                return Err(RpcError::RepliesLost);
            }
            calls.waiting.insert(correlation_id.clone(), reply_sender);
        }
        let outcome = self.send_and_wait(n, &correlation_id, reply).await;
        lock(&self.waiting).waiting.remove(&correlation_id);
        let reply = outcome?;
        let text = String::from_utf8_lossy(&reply);
        text.trim().parse().map_err(|_| RpcError::BadReply {
            reply: text.into_owned(),
        })
    }

    async fn send_and_wait(
        &self,
        n: u64,
        correlation_id: &str,
        reply: oneshot::Receiver<Vec<u8>>,
    ) -> Result<Vec<u8>, RpcError> {
        let properties = BasicProperties::default()
            .with_reply_to(self.reply_to.as_str().into())
            .with_correlation_id(correlation_id.into())
            .with_expiration(self.timeout.as_millis().to_string().as_str().into());
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                RPC_QUEUE.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                n.to_string().as_bytes(),
                properties,
            )
            .await
            .map_err(AmqpError::broker("sending the request"))?;
        // The reply and the confirm travel side by side: waiting for the
        // confirm before the reply would add a round trip to every call.
        // The confirm still matters when no queue took the request (then
        // no reply will ever come), so it is settled first if it is first.
        let reply = tokio::time::timeout(self.timeout, reply);
        tokio::pin!(reply);
        tokio::select! {
            biased;
            replied = &mut reply => return reply_or_error(replied, self.timeout),
            confirmation = confirm => match confirmation
                .map_err(AmqpError::broker("waiting for the request's confirm"))?
            {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                    return Err(RpcError::NoServerQueue {
                        queue: RPC_QUEUE.to_owned(),
                    });
                }
                Confirmation::Nack(None) => {
                    return Err(AmqpError::Nacked {
                        routing_key: RPC_QUEUE.to_owned(),
                    }
                    .into());
                }
            },
        }
        reply_or_error(reply.await, self.timeout)
    }
}

fn reply_or_error(
    replied: Result<Result<Vec<u8>, oneshot::error::RecvError>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    match replied {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_reader_gone)) => Err(RpcError::RepliesLost),
        Err(_elapsed) => Err(RpcError::NoReply {
            queue: RPC_QUEUE.to_owned(),
            seconds: timeout.as_secs_f64(),
        }),
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Reads the callback queue and wakes the call each reply belongs to.
async fn hand_out_replies(mut consumer: Consumer, waiting: Waiting) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let owner = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| lock(&waiting).waiting.remove(id.as_str()));
        match owner {
            // The call may have timed out a moment ago; then nobody listens.
            Some(call) => {
                let _ = call.send(delivery.data);
            }
            None => debug!(
                correlation_id = ?delivery.properties.correlation_id(),
                "ignoring a reply that no call is waiting for"
            ),
        }
    }
    // The consumer ended (connection lost or cancelled): every waiting call
    // learns it now instead of at its timeout, and so does every later one.
    let mut calls = lock(&waiting);
    calls.closed = true;
    calls.waiting.clear();
}

/// The table is only touched for a moment; a panic while holding it cannot
/// leave it half-updated, so a poisoned lock is still good to use.
fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, Calls> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

//! The asking side of remote control: `celery inspect` and `celery control`.
//!
//! A client opens a reply queue of its own (`<oid>.reply.celery.pidbox`),
//! broadcasts one request stamped with a fresh ticket, and collects the
//! replies that carry that ticket until none has come for `timeout` — or,
//! when the request names its destinations, until each has answered. The
//! worker uses it too, for mingle's `hello` at start.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    clock::LamportClock,
    mailbox::{Listen, Outgoing},
    request::Request,
};
use crate::{
    broker::BrokerError, control::transport::MailboxTransport, protocol::time::epoch_seconds,
};

/// One node's reply: its name and what it said.
pub type Reply = (String, Value);

/// Broadcasts `request` and returns the replies, in the order they came.
pub async fn broadcast<B: MailboxTransport>(
    url: &str,
    settings: amqp_connect::AmqpSettings,
    request: Request,
    timeout: Duration,
    clock: &LamportClock,
) -> Result<Vec<Reply>, BrokerError> {
    let oid = uuid::Uuid::new_v4().to_string();
    let ticket = uuid::Uuid::new_v4().to_string();
    let limit = request.destination.as_ref().map(Vec::len);
    let mut mailbox = B::mailbox(url, settings, Listen::Replies { oid: oid.clone() }).await?;
    let request = request.with_reply(ticket.clone(), oid);
    let expires = epoch_seconds(chrono::Utc::now()) + timeout.as_secs_f64();
    let sent = mailbox
        .outgoing
        .send(Outgoing::Request {
            body: serde_json::to_value(&request).unwrap_or(Value::Null),
            clock: clock.forward(),
            expires,
        })
        .await;
    let mut replies = Vec::new();
    if sent.is_ok() {
        // kombu's `_collect`: each reply gets `timeout` to arrive.
        while let Ok(Some(message)) = tokio::time::timeout(timeout, mailbox.incoming.recv()).await {
            clock.adjust(message.clock);
            if message.ticket.as_deref() != Some(ticket.as_str()) {
                continue; // a late reply to somebody else's request
            }
            if let Value::Object(by_node) = message.body {
                replies.extend(by_node);
            }
            if limit.is_some_and(|limit| replies.len() >= limit) {
                break;
            }
        }
    }
    mailbox.close().await;
    Ok(replies)
}

/// The arguments of a request, from `(name, value)` pairs.
pub fn arguments<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

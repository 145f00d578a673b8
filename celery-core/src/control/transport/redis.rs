//! The remote-control mailbox and the event stream on Redis, as kombu lays
//! them out (`../shared/celery-canvas-control-events.md` §2.1, §3.1):
//!
//! * requests are broadcast with `PUBLISH /<db>.celery.pidbox`; every worker
//!   listens with `PSUBSCRIBE` on that channel;
//! * a reply is `LPUSH`ed onto the asking client's reply list, found in the
//!   set `_kombu.binding.reply.celery.pidbox` (members
//!   `routing_key\x06\x16pattern\x06\x16queue`), which the client fills;
//! * events are `PUBLISH`ed on `/<db>.celeryev/<routing key>`.
//!
//! Every message is in kombu's envelope. Pub/sub is fire and forget, as in
//! kombu: a request published while a worker is reconnecting is not seen.

use std::time::Duration;

use futures_lite::StreamExt;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::debug;

use crate::{
    broker::BrokerError,
    control::{
        mailbox::{Incoming, Listen, Mailbox, OUTGOING_CAPACITY, Outgoing},
        request::MAILBOX_EXCHANGE,
    },
    protocol::redis_envelope::{decode_other, encode_other},
    redis_connection::{ManagedConnection, RedisConnection, RedisOptions, Role},
};

/// kombu's separator inside a binding member.
const SEPARATOR: &str = "\x06\x16";
/// How long a reply list waits between checks that its client still listens.
const REPLY_POLL: f64 = 1.0;

/// Opens the mailbox on the Redis at `url`.
pub async fn open(
    url: &str,
    options: &RedisOptions,
    listen: Listen,
) -> Result<Mailbox, BrokerError> {
    let connection = RedisConnection::open(url, Role::MAILBOX, options).await?;
    let db = connection.db();
    let (incoming_tx, incoming) = mpsc::channel(256);
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_CAPACITY);
    let failed = |action| {
        let url = connection.shown_url();
        move |source| BrokerError::Redis {
            url,
            action,
            source,
        }
    };
    let listener = match &listen {
        Listen::Requests { .. } => {
            let channel = format!("/{db}.{MAILBOX_EXCHANGE}");
            let pubsub = subscribe(&connection, &channel)
                .await
                .map_err(failed("subscribing to the remote-control channel"))?;
            tokio::spawn(receive_requests(
                connection.clone(),
                channel,
                pubsub,
                incoming_tx,
            ))
        }
        Listen::Replies { oid } => {
            let queue = reply_queue(oid);
            let _: () = connection
                .manager()
                .sadd(
                    bindings_key(crate::control::request::REPLY_EXCHANGE),
                    binding(oid, &queue),
                )
                .await
                .map_err(failed("binding the reply queue"))?;
            tokio::spawn(receive_replies(connection.clone(), queue, incoming_tx))
        }
        Listen::Nothing => tokio::spawn(async move { incoming_tx.closed().await }),
    };
    let running = tokio::spawn(async move {
        send_all(&connection, db, outgoing_rx).await;
        listener.abort();
        if let Listen::Replies { oid } = listen {
            // kombu's `after_reply_message_received`: the list goes with its client.
            let queue = reply_queue(&oid);
            let mut redis = connection.manager();
            let _: Result<(), _> = redis
                .srem(
                    bindings_key(crate::control::request::REPLY_EXCHANGE),
                    binding(&oid, &queue),
                )
                .await;
            let _: Result<(), _> = redis.del(&queue).await;
        }
    });
    Ok(Mailbox {
        outgoing,
        incoming,
        running,
    })
}

fn reply_queue(oid: &str) -> String {
    format!("{oid}.{}", crate::control::request::REPLY_EXCHANGE)
}

fn bindings_key(exchange: &str) -> String {
    format!("_kombu.binding.{exchange}")
}

/// A direct binding: routing key, no pattern, queue.
fn binding(routing_key: &str, queue: &str) -> String {
    format!("{routing_key}{SEPARATOR}{SEPARATOR}{queue}")
}

async fn subscribe(
    connection: &RedisConnection,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = connection.pubsub().await?;
    pubsub.psubscribe(channel).await?;
    Ok(pubsub)
}

/// The sender's clock and the reply's ticket, from kombu's headers.
fn incoming(raw: &[u8]) -> Option<Incoming> {
    let (headers, body) = decode_other(raw)?;
    Some(Incoming {
        body,
        clock: headers.get("clock").and_then(Value::as_u64).unwrap_or(0),
        ticket: headers
            .get("ticket")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Forwards broadcast requests until nobody reads them; resubscribes after
/// the connection drops (the pub/sub stream then ends).
async fn receive_requests(
    connection: RedisConnection,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    requests: mpsc::Sender<Incoming>,
) {
    loop {
        let mut stream = pubsub.into_on_message();
        while let Some(message) = stream.next().await {
            connection.watch().ok();
            if let Some(request) = incoming(message.get_payload_bytes())
                && requests.send(request).await.is_err()
            {
                return;
            }
        }
        connection
            .watch()
            .lost(&"the remote-control subscription ended");
        pubsub = loop {
            if requests.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match subscribe(&connection, &channel).await {
                Ok(pubsub) => break pubsub,
                Err(error) => connection.watch().lost(&error),
            }
        };
        connection.watch().ok();
    }
}

/// Pops replies off the client's list until the client stops listening.
async fn receive_replies(
    connection: RedisConnection,
    queue: String,
    replies: mpsc::Sender<Incoming>,
) {
    let Ok(mut redis) = connection.blocking_connection().await else {
        return;
    };
    while !replies.is_closed() {
        let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
            redis.brpop(&queue, REPLY_POLL).await;
        match popped {
            Ok(Some((_, raw))) => {
                if let Some(reply) = incoming(&raw)
                    && replies.send(reply).await.is_err()
                {
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                debug!("reading replies: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sends everything queued, until the queue closes. A message that cannot
/// be sent (Redis is away) is dropped: the watch says so, once.
async fn send_all(connection: &RedisConnection, db: i64, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut redis = connection.manager();
    while let Some(message) = outgoing.recv().await {
        let sent: redis::RedisResult<()> = match message {
            Outgoing::Request {
                body,
                clock,
                expires,
            } => {
                let headers = headers(json!({"clock": clock, "expires": expires}));
                let envelope =
                    encode_other(body.to_string().as_bytes(), &headers, MAILBOX_EXCHANGE, "");
                redis
                    .publish(format!("/{db}.{MAILBOX_EXCHANGE}"), envelope)
                    .await
            }
            Outgoing::Reply {
                to,
                ticket,
                clock,
                body,
            } => {
                let headers = headers(json!({"ticket": ticket, "clock": clock}));
                let envelope = encode_other(
                    body.to_string().as_bytes(),
                    &headers,
                    &to.exchange,
                    &to.routing_key,
                );
                reply(&mut redis, &to.exchange, &to.routing_key, envelope).await
            }
            Outgoing::Event {
                routing_key,
                body,
                hostname,
            } => {
                let headers = headers(json!({"hostname": hostname}));
                let envelope = encode_other(&body, &headers, "celeryev", &routing_key);
                redis
                    .publish(format!("/{db}.celeryev/{routing_key}"), envelope)
                    .await
            }
        };
        match sent {
            Ok(()) => {
                connection.watch().ok();
            }
            Err(error) if crate::redis_connection::is_connection_error(&error) => {
                connection.watch().lost(&error);
            }
            Err(error) => debug!("remote control: {error}"),
        }
    }
}

fn headers(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// kombu's direct-exchange routing on Redis: every queue bound to
/// `exchange` with `routing_key` gets the message.
async fn reply(
    redis: &mut ManagedConnection,
    exchange: &str,
    routing_key: &str,
    envelope: String,
) -> redis::RedisResult<()> {
    let members: Vec<String> = redis.smembers(bindings_key(exchange)).await?;
    for member in members {
        let mut parts = member.split(SEPARATOR);
        if let (Some(key), Some(_pattern), Some(queue)) = (parts.next(), parts.next(), parts.next())
            && key == routing_key
        {
            let _: () = redis.lpush(queue, &envelope).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_is_written_as_kombu_writes_it() {
        assert_eq!(
            binding("oid", "oid.reply.celery.pidbox"),
            "oid\x06\x16\x06\x16oid.reply.celery.pidbox"
        );
        let raw = encode_other(
            br#"{"w@h": {"ok": "pong"}}"#,
            &headers(json!({"ticket": "t", "clock": 7})),
            "reply.celery.pidbox",
            "oid",
        );
        let read = incoming(raw.as_bytes()).unwrap();
        assert_eq!((read.clock, read.ticket.as_deref()), (7, Some("t")));
        assert_eq!(read.body["w@h"]["ok"], "pong");
        assert!(incoming(b"not json").is_none());
    }
}

//! The remote-control mailbox and the event stream on RabbitMQ, declared
//! exactly as Celery 5.7 declares them (a mismatch in one argument and the
//! broker refuses the declare):
//!
//! * requests: the fanout exchange `celery.pidbox` (not durable); each
//!   worker binds its own queue `<nodename>.celery.pidbox` — exclusive,
//!   auto-delete, `x-message-ttl` 300 s, `x-expires` 10 s — and consumes
//!   it without acks;
//! * replies: the direct exchange `reply.celery.pidbox`; a client binds its
//!   queue `<oid>.reply.celery.pidbox` with the routing key `<oid>`;
//! * events: the durable topic exchange `celeryev`, routing key = the event
//!   type with `.` for `-`.
//!
//! The connection is lapin's self-recovering one (`amqp_connect::connect_amqp`):
//! after a broker restart it declares all of this again by itself.

use futures_lite::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ExchangeKind,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{
    broker::BrokerError,
    control::{
        mailbox::{Incoming, Listen, Mailbox, OUTGOING_CAPACITY, Outgoing},
        request::{MAILBOX_EXCHANGE, REPLY_EXCHANGE},
    },
    protocol::amqp_table,
};
use amqp_connect::{AmqpError, AmqpSettings, amqp::amqp_error, connect_amqp};

/// Celery's `control_queue_ttl` and `control_queue_expires`, in ms.
const QUEUE_TTL_MS: i32 = 300_000;
const QUEUE_EXPIRES_MS: i32 = 10_000;
const EVENT_EXCHANGE: &str = "celeryev";

/// Opens the mailbox on the RabbitMQ of `settings.url`.
pub async fn open(settings: &AmqpSettings, listen: Listen) -> Result<Mailbox, BrokerError> {
    let connection = connect_amqp(settings, "celery-core mailbox").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let (queue, exchange, kind, routing_key) = match &listen {
        Listen::Nothing => {
            let (incoming_tx, incoming) = mpsc::channel(1);
            let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_CAPACITY);
            let consumer = futures_lite::stream::pending();
            let running =
                tokio::spawn(run(connection, channel, consumer, incoming_tx, outgoing_rx));
            return Ok(Mailbox {
                outgoing,
                incoming,
                running,
            });
        }
        Listen::Requests { hostname } => (
            format!("{hostname}.celery.pidbox"),
            MAILBOX_EXCHANGE,
            ExchangeKind::Fanout,
            String::new(),
        ),
        Listen::Replies { oid } => (
            format!("{oid}.{REPLY_EXCHANGE}"),
            REPLY_EXCHANGE,
            ExchangeKind::Direct,
            oid.clone(),
        ),
    };
    declare_transient_exchange(&channel, exchange, kind).await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(QUEUE_TTL_MS));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(QUEUE_EXPIRES_MS));
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                durable: false,
                ..Default::default()
            },
            arguments,
        )
        .await;
    if let Err(error) = declared {
        // 405 RESOURCE_LOCKED: another live connection owns the exclusive queue.
        if amqp_error(&error).map(|e| e.get_id()) == Some(405)
            && let Listen::Requests { hostname } = listen
        {
            let _ = connection.close(200, "bye".into()).await;
            return Err(BrokerError::NodeNameTaken { hostname });
        }
        return Err(AmqpError::broker("declaring the remote-control queue")(error).into());
    }
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("binding the remote-control queue"))?;
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("consuming the remote-control queue"))?;
    let (incoming_tx, incoming) = mpsc::channel(256);
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_CAPACITY);
    let running = tokio::spawn(run(connection, channel, consumer, incoming_tx, outgoing_rx));
    Ok(Mailbox {
        outgoing,
        incoming,
        running,
    })
}

/// kombu's `Exchange(name, type, durable=False, delivery_mode='transient')`.
async fn declare_transient_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), AmqpError> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("declaring the remote-control exchange"))
}

async fn run(
    connection: Connection,
    channel: Channel,
    mut consumer: impl futures_lite::Stream<Item = Result<lapin::message::Delivery, lapin::Error>>
    + Unpin,
    incoming: mpsc::Sender<Incoming>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut listening = true;
    let mut events_declared = false;
    loop {
        tokio::select! {
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                if let Err(error) = send(&channel, message, &mut events_declared).await {
                    // Best effort, as in Celery: the loss is logged by the
                    // consumer's watch, the message is gone.
                    debug!(%error, "remote control: not sent");
                }
            }
            delivery = consumer.next(), if listening => match delivery {
                Some(Ok(delivery)) => {
                    let headers = delivery
                        .properties
                        .headers()
                        .as_ref()
                        .map(amqp_table::from_field_table)
                        .unwrap_or_default();
                    let Ok(body) = serde_json::from_slice::<Value>(&delivery.data) else { continue };
                    let received = Incoming {
                        body,
                        clock: headers.get("clock").and_then(Value::as_u64).unwrap_or(0),
                        ticket: headers.get("ticket").and_then(Value::as_str).map(str::to_owned),
                    };
                    if incoming.send(received).await.is_err() {
                        listening = false;
                    }
                }
                Some(Err(error)) => {
                    if let Err(error) = channel.wait_for_recovery(error).await {
                        warn!(%error, "RabbitMQ did not come back; remote control stops listening");
                        listening = false;
                    }
                }
                None => listening = false,
            },
        }
    }
    let _ = connection.close(200, "bye".into()).await;
}

async fn send(
    channel: &Channel,
    message: Outgoing,
    events_declared: &mut bool,
) -> Result<(), lapin::Error> {
    let (exchange, routing_key, headers, body) = match message {
        Outgoing::Request {
            body,
            clock,
            expires,
        } => (
            MAILBOX_EXCHANGE.to_owned(),
            String::new(),
            json!({"clock": clock, "expires": expires}),
            body.to_string().into_bytes(),
        ),
        Outgoing::Reply {
            to,
            ticket,
            clock,
            body,
        } => (
            to.exchange,
            to.routing_key,
            json!({"ticket": ticket, "clock": clock}),
            body.to_string().into_bytes(),
        ),
        Outgoing::Event {
            routing_key,
            body,
            hostname,
        } => {
            if !*events_declared {
                // kombu's default Exchange: durable, topic.
                channel
                    .exchange_declare(
                        EVENT_EXCHANGE.into(),
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                *events_declared = true;
            }
            (
                EVENT_EXCHANGE.to_owned(),
                routing_key,
                json!({"hostname": hostname}),
                body,
            )
        }
    };
    let headers = match headers {
        Value::Object(map) => amqp_table::to_field_table(&map),
        _ => amqp_table::to_field_table(&Map::new()),
    };
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(1)
        .with_priority(0)
        .with_headers(headers);
    channel
        .basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?;
    Ok(())
}

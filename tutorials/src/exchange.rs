//! Exchanges, and sending one confirmed message to one (tutorials 2–5).
//!
//! In tutorial 1 (the blog) the producer sends to a queue by name, through
//! the default exchange `""`. From tutorial 3 on it sends to a named
//! exchange instead, and the exchange's type decides which queues get a copy:
//!
//! * `fanout` (tutorial 3): every bound queue, whatever the routing key;
//! * `direct` (tutorial 4): the queues bound with exactly that key;
//! * `topic` (tutorial 5): the queues whose binding pattern matches the
//!   dotted key, `*` standing for one word and `#` for zero or more.
//!
//! The Python scripts publish and exit without knowing whether the broker
//! took the message. [`publish_one`] waits for the publisher confirm, and
//! says when no queue was bound to receive it: the tutorial explains that
//! such a message is simply dropped, and now the sender can see it happen.

use lapin::{
    BasicProperties, Channel, Confirmation, ExchangeKind,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::FieldTable,
};
use shared::{AmqpError, AmqpSettings, amqp::amqp_error, connect_amqp};
use tracing::warn;

/// `channel.exchange_declare(exchange=name, exchange_type=kind)`, as pika
/// does it (not durable), with a one-line error if it exists as another type.
pub async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), AmqpError> {
    let declared = channel
        .exchange_declare(
            name.into(),
            kind.clone(),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => Ok(()),
        Err(error) => match amqp_error(&error).map(|e| (e.get_id(), e.get_message().to_string())) {
            // PRECONDITION_FAILED: the name is taken by another type or durability.
            Some((406, detail)) => Err(AmqpError::ExchangeMismatch {
                exchange: name.to_owned(),
                kind: kind_name(&kind).to_owned(),
                detail,
            }),
            _ => Err(AmqpError::Broker {
                action: "declaring the exchange",
                source: error,
            }),
        },
    }
}

/// The type's name as RabbitMQ spells it (lapin keeps its own to itself).
fn kind_name(kind: &ExchangeKind) -> &str {
    match kind {
        ExchangeKind::Custom(name) => name,
        ExchangeKind::Direct => "direct",
        ExchangeKind::Fanout => "fanout",
        ExchangeKind::Headers => "headers",
        ExchangeKind::Topic => "topic",
    }
}

/// Whether a confirmed message reached at least one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// The broker confirmed it, and at least one queue holds a copy.
    ToQueues,
    /// The broker confirmed it but no queue was bound to receive it: it is
    /// gone, as the tutorial says a log line with no listener is.
    Dropped,
}

/// Publishes one message and waits for the broker's confirm: the scripts'
/// `basic_publish(...)`, made reliable. The channel is put in confirm mode.
pub async fn publish_one(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<Routed, AmqpError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))?;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            // mandatory: an unroutable message comes back (basic.return), so
            // we can tell "dropped" from "delivered".
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(AmqpError::broker("publishing"))?;
    match confirm
        .await
        .map_err(AmqpError::broker("waiting for the confirm"))?
    {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Routed::ToQueues),
        Confirmation::Ack(Some(_returned)) => Ok(Routed::Dropped),
        Confirmation::Nack(_) => Err(AmqpError::Nacked {
            routing_key: routing_key.to_owned(),
        }),
    }
}

/// A persistent message (`delivery_mode=2`, pika's `DeliveryMode.Persistent`):
/// written to disk by a durable queue, so it survives a broker restart.
pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// The whole of `emit_log*.py`: connect, declare the exchange, publish one
/// confirmed message with `routing_key`, close. A message no queue was bound
/// to receive is reported on stderr; it is not an error, as in the tutorial.
pub async fn emit(
    settings: &AmqpSettings,
    program: &str,
    exchange: &str,
    kind: ExchangeKind,
    routing_key: &str,
    message: &str,
) -> Result<(), AmqpError> {
    let connection = connect_amqp(settings, program).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    declare_exchange(&channel, exchange, kind.clone()).await?;
    let routed = publish_one(
        &channel,
        exchange,
        routing_key,
        message.as_bytes(),
        BasicProperties::default(),
    )
    .await?;
    if routed == Routed::Dropped {
        // A fanout ignores the key, so naming it would only confuse.
        let key = if matches!(kind, ExchangeKind::Fanout) {
            String::new()
        } else {
            format!(" with key '{routing_key}'")
        };
        warn!(
            "no queue is bound to '{exchange}'{key} yet, so the broker dropped the message; start a receiver first"
        );
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

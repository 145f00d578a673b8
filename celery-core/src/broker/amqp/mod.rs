//! The AMQP transport (RabbitMQ): Celery's exchange, queue and headers,
//! publisher confirms on the way in, batched acks on the way out.
//!
//! Topology is Celery's (`celery-protocol.md` §C): a durable direct exchange
//! and a durable queue of the same name (`celery`), bound with the queue name
//! as routing key. Messages go to the default exchange `""` with the queue
//! name as routing key, headers in a field table, the JSON body raw.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | this one | topology, and a message's properties both ways |
//! | [`producer`] | publishing with confirms |
//! | [`consumer`] | one channel and consumer per queue; settling; reconnects |
//! | (`control::transport::amqp`) | remote control and events: `celery.pidbox`, `celeryev` |
//! | `ack_tracker.rs` | which finished deliveries one `multiple` ack may cover (pure) |

mod ack_tracker;
pub mod consumer;
pub mod producer;

use lapin::{
    BasicProperties, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use tokio::sync::mpsc;
use tracing::info;

pub use consumer::{AmqpConsumer, AmqpToken};
pub use producer::AmqpProducer;

use super::{Broker, BrokerError, ConsumerConfig, Delivery};
use crate::protocol::{
    TaskMessage, TaskProperties, amqp_table, message::task_id_of, redis_envelope::Received,
};
use amqp_connect::{AmqpError, AmqpSettings, QueueType, SecretUrl, amqp::amqp_error};

/// The AMQP transport.
#[derive(Debug, Clone, Copy)]
pub struct Amqp;

impl Broker for Amqp {
    type Producer = AmqpProducer;
    type Consumer = AmqpConsumer;

    async fn producer(url: &str, mut settings: AmqpSettings) -> Result<AmqpProducer, BrokerError> {
        settings.url = SecretUrl::from(url);
        AmqpProducer::connect(settings).await
    }

    async fn consumer(
        config: &ConsumerConfig,
    ) -> Result<(AmqpConsumer, mpsc::Receiver<Delivery<AmqpToken>>), BrokerError> {
        let mut settings = config.amqp.clone();
        settings.url = config.url.clone();
        AmqpConsumer::start(consumer::AmqpConsumerConfig {
            settings,
            queues: config.queues.clone(),
            prefetch: u16::try_from(config.prefetch).unwrap_or(u16::MAX),
        })
        .await
    }
}

/// Declares Celery's topology for `queue`: exchange and queue of that name
/// (direct, durable), bound by the queue name. A quorum queue is declared
/// as kombu declares it for `task_default_queue_type = 'quorum'`:
/// `x-queue-type: quorum`, so a Python worker configured that way and ours
/// declare the same queue.
///
/// A queue that already exists with other arguments (a dead-letter exchange,
/// a delivery limit, another type) is used as it is: redeclaring it without
/// them would fail with PRECONDITION_FAILED, and its arguments are the
/// operator's choice. We say so, once per declare.
///
/// Returns the queue's type when our declaration matched it, `None` when
/// the queue exists with other arguments (its type is then unknown).
pub async fn declare_celery_queue(
    connection: &Connection,
    queue: &str,
    queue_type: QueueType,
) -> Result<Option<QueueType>, AmqpError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await;
    match declared {
        Ok(_) => {
            channel
                .exchange_declare(
                    queue.into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::broker("declaring the exchange"))?;
            channel
                .queue_bind(
                    queue.into(),
                    queue.into(),
                    queue.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::broker("binding the queue"))?;
            let _ = channel.close(200, "declared".into()).await;
            Ok(Some(queue_type))
        }
        Err(error) if amqp_error(&error).map(|e| e.get_id()) == Some(406) => {
            let detail = amqp_error(&error).map(|e| e.get_message().to_string());
            info!(
                "Queue '{queue}' exists with other arguments; using it as it is ({})",
                detail.unwrap_or_default()
            );
            Ok(None)
        }
        Err(error) => Err(AmqpError::Broker {
            action: "declaring the queue",
            source: error,
        }),
    }
}

/// AMQP properties and headers of a task message, as py-amqp writes them.
fn properties_of(message: &TaskMessage) -> BasicProperties {
    let headers = match message.headers_value() {
        serde_json::Value::Object(map) => amqp_table::to_field_table(&map),
        _ => FieldTable::default(),
    };
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_headers(headers)
        .with_delivery_mode(message.properties.delivery_mode)
        .with_priority(message.properties.priority)
        .with_correlation_id(message.properties.correlation_id.as_str().into());
    if let Some(reply_to) = &message.properties.reply_to {
        properties = properties.with_reply_to(reply_to.as_str().into());
    }
    if let Some(expires) = message.expires() {
        let millis = (expires - chrono::Utc::now()).num_milliseconds().max(0);
        properties = properties.with_expiration(millis.to_string().into());
    }
    properties
}

/// Reads one AMQP delivery as a task message.
pub fn decode_delivery(properties: &BasicProperties, body: &[u8]) -> Received {
    let headers = properties
        .headers()
        .as_ref()
        .map(amqp_table::from_field_table)
        .unwrap_or_default();
    let task_id = task_id_of(&headers).map(str::to_owned);
    let task_name = headers
        .get("task")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let content_type = properties
        .content_type()
        .as_ref()
        .map_or("application/json", |t| t.as_str());
    let message_properties = TaskProperties {
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(|id| id.to_string())
            .or_else(|| task_id.clone())
            .unwrap_or_default(),
        reply_to: properties.reply_to().as_ref().map(|r| r.to_string()),
        delivery_mode: properties.delivery_mode().unwrap_or(2),
        priority: properties.priority().unwrap_or(0),
    };
    Received {
        task_id,
        task_name,
        message: TaskMessage::decode(content_type, headers, message_properties, body),
    }
}

//! The receiving side of tutorials 3–5: a private queue bound to an exchange.
//!
//! ```python
//! result = channel.queue_declare(queue='', exclusive=True)
//! queue_name = result.method.queue
//! channel.queue_bind(exchange='logs', queue=queue_name)
//! channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
//! ...
//! except KeyboardInterrupt:
//!     print("Interrupted")
//! ```
//!
//! The queue is server-named (`amq.gen-…`) and exclusive: it belongs to this
//! connection and the broker deletes it when we disconnect, so every
//! receiver gets its own copy of each message and leaves nothing behind.
//! Exclusive queues are also why tutorials 3–5 keep working on RabbitMQ
//! 4.3+, which refuses queues that are neither durable nor exclusive.
//!
//! Like the scripts we consume with `auto_ack`: acking buys nothing here,
//! since a message left unacked in an exclusive queue dies with the queue
//! anyway. (Tutorial 2's worker, whose queue outlives it, acks after the work.)

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::{
    Channel, ExchangeKind,
    message::Delivery,
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use shared::{AmqpError, AmqpSettings, Shutdown, cli::print_line, connect_amqp};

use crate::exchange::declare_exchange;

/// How a receiver prints a message: `receive_logs.py` shows the body only,
/// the direct and topic receivers put the routing key in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// ` [x] info: Hello World!`
    Body,
    /// ` [x] error:Run. Run. Or it will explode.`
    RoutingKeyAndBody,
}

impl LineFormat {
    /// The line the Python callback prints for `delivery`: its `body.decode()`,
    /// with bytes that are not UTF-8 shown as `�` instead of a crash.
    pub fn line(self, delivery: &Delivery) -> String {
        let body = String::from_utf8_lossy(&delivery.data);
        match self {
            LineFormat::Body => format!(" [x] {body}"),
            LineFormat::RoutingKeyAndBody => format!(" [x] {}:{body}", delivery.routing_key),
        }
    }
}

/// The whole of `receive_logs*.py`: connect, declare the exchange, bind a
/// private queue with each of `binding_keys`, and print every message as
/// `format` says until Ctrl-C.
pub async fn receive(
    settings: &AmqpSettings,
    program: &str,
    exchange: &str,
    kind: ExchangeKind,
    binding_keys: &[String],
    format: LineFormat,
) -> anyhow::Result<()> {
    // Before connecting, so a Ctrl-C while we connect is handled too.
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    let connection = connect_amqp(settings, program).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    declare_exchange(&channel, exchange, kind).await?;
    let queue = private_queue(&channel, exchange, binding_keys).await?;
    print_until_stopped(&channel, &queue, format, &mut shutdown).await?;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

/// Declares a private queue, binds it to `exchange` once per key in
/// `binding_keys`, and returns its server-given name.
async fn private_queue(
    channel: &Channel,
    exchange: &str,
    binding_keys: &[String],
) -> Result<String, AmqpError> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("declaring the private queue"))?;
    let queue_name = queue.name().to_string();
    for key in binding_keys {
        channel
            .queue_bind(
                queue_name.as_str().into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::broker("binding the queue to the exchange"))?;
    }
    Ok(queue_name)
}

/// Prints every message of `queue` as `format` says, until Ctrl-C; then
/// `Interrupted`, as the scripts do.
async fn print_until_stopped(
    channel: &Channel,
    queue: &str,
    format: LineFormat,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("starting the consumer"))?;
    print_line(" [*] Waiting for logs. To exit press CTRL+C")?;
    loop {
        tokio::select! {
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => print_line(format.line(&delivery))?,
                Some(Err(error)) => {
                    return Err(AmqpError::Broker { action: "receiving", source: error }.into())
                }
                None => {
                    return Err(AmqpError::ConsumerCancelled { queue: queue.to_owned() }.into())
                }
            },
            _ = shutdown.recv() => {
                print_line("Interrupted")?;
                return Ok(());
            }
        }
    }
}

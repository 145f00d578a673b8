//! The RPC server: answer each request, then ack it.
//!
//! ```python
//! channel.queue_declare(queue="rpc_queue", durable=True, arguments={"x-queue-type": "quorum"})
//! def on_request(ch, method, props, body):
//!     n = int(body)
//!     print(f" [.] fib({n})")
//!     response = fib(n)
//!     ch.basic_publish(exchange='', routing_key=props.reply_to,
//!                      properties=pika.BasicProperties(correlation_id=props.correlation_id),
//!                      body=str(response))
//!     ch.basic_ack(delivery_tag=method.delivery_tag)
//! channel.basic_qos(prefetch_count=1)
//! ```
//!
//! The order matters: the request is acked only after the reply is
//! published (and, here, confirmed by the broker), so a server that dies in
//! between leaves the request in `rpc_queue` for another server. A request
//! that cannot be answered — a body that is not a number, no `reply_to` — is
//! rejected with a warning instead of crashing the server as `int(body)`
//! would; rejected, not requeued, so it does not come back forever.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        BasicRejectOptions, ConfirmSelectOptions,
    },
    types::FieldTable,
};
use shared::{AmqpError, Shutdown, cli::print_line};
use tokio::task::JoinSet;
use tracing::warn;

use super::{MAX_FIB_INPUT, RPC_QUEUE, client::DIRECT_REPLY_TO, fib};

/// Answers requests from `rpc_queue` until Ctrl-C.
pub async fn serve(
    channel: &Channel,
    prefetch: u16,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(AmqpError::broker("setting the prefetch count"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))?;
    let mut requests = channel
        .basic_consume(
            RPC_QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("starting the consumer"))?;
    print_line(" [x] Awaiting RPC requests")?;
    let mut acks = JoinSet::new();
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            _ = shutdown.recv() => break,
        };
        // Finished ack tasks are reaped as we go, so the set stays small.
        while acks.try_join_next().is_some() {}
        match request {
            Some(Ok(request)) => answer(channel, request, &mut acks).await?,
            Some(Err(error)) => {
                return Err(AmqpError::Broker {
                    action: "receiving",
                    source: error,
                }
                .into());
            }
            None => {
                return Err(AmqpError::ConsumerCancelled {
                    queue: RPC_QUEUE.to_owned(),
                }
                .into());
            }
        }
    }
    // Answered requests are acked before we go: closing the channel first
    // would hand them back to the queue, to be answered a second time.
    if tokio::time::timeout(ACK_GRACE, async {
        while acks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!(
            "some answered requests were not acked within {ACK_GRACE:?}; the broker will deliver them again"
        );
    }
    Ok(())
}

/// How long a stopping server waits for its last replies' confirms.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// What a request asks for, or why it cannot be answered.
/// Returns `n`, its Fibonacci number, and where to send it.
fn parse_request(request: &Delivery) -> Result<(u64, u64, String), String> {
    let Some(reply_to) = request.properties.reply_to() else {
        return Err("it has no reply_to, so the answer could not be sent".to_owned());
    };
    let body = String::from_utf8_lossy(&request.data);
    let n_and_answer = body
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| Some((n, fib(n)?)));
    match n_and_answer {
        Some((n, answer)) => Ok((n, answer, reply_to.to_string())),
        None => Err(format!(
            "its body {body:?} is not a whole number from 0 to {MAX_FIB_INPUT}"
        )),
    }
}

async fn answer(
    channel: &Channel,
    request: Delivery,
    acks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let (n, response, reply_to) = match parse_request(&request) {
        Ok(parsed) => parsed,
        Err(reason) => {
            warn!("rejecting a request: {reason}");
            request
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map_err(AmqpError::broker("rejecting the request"))?;
            return Ok(());
        }
    };
    print_line(format_args!(" [.] fib({n})"))?;
    let mut properties = BasicProperties::default();
    if let Some(id) = request.properties.correlation_id() {
        properties = properties.with_correlation_id(id.clone());
    }
    // `mandatory` makes a reply to a caller that has gone come back to us.
    // Not for direct reply-to: RabbitMQ 3.x returns every mandatory reply
    // sent that way, delivered or not (measured here: one `basic.return` per
    // call), and a caller gone from there is already dropped by the broker.
    let confirm = channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions {
                mandatory: !reply_to.starts_with(DIRECT_REPLY_TO),
                ..BasicPublishOptions::default()
            },
            response.to_string().as_bytes(),
            properties,
        )
        .await
        .map_err(AmqpError::broker("sending the reply"))?;
    // The ack waits for the reply's confirm, but the next request does not:
    // up to `prefetch` replies are in flight at once (acks may then go out
    // of order, which AMQP allows: each names its own delivery tag).
    acks.spawn(ack_once_confirmed(confirm, request, reply_to));
    Ok(())
}

/// Acks `request` once the broker confirmed its reply.
async fn ack_once_confirmed(confirm: PublisherConfirm, request: Delivery, reply_to: String) {
    let settled = match confirm.await {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
            request.ack(BasicAckOptions::default()).await
        }
        // The caller's queue is gone (it timed out and left): nobody can
        // take this answer, and answering again would not change that.
        Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
            warn!("the caller's reply queue '{reply_to}' is gone; its answer is dropped");
            request.ack(BasicAckOptions::default()).await
        }
        // The broker could not take the reply: the request goes back to
        // the queue, to be answered again.
        Ok(Confirmation::Nack(None)) => {
            warn!("RabbitMQ refused the reply to '{reply_to}'; the request goes back to the queue");
            request.reject(BasicRejectOptions { requeue: true }).await
        }
        // The connection is gone: so is the unacked request's hold; the
        // broker hands it to a server again.
        Err(error) => Err(error),
    };
    if let Err(error) = settled {
        warn!(
            "the request for '{reply_to}' was not acked ({error}); the broker will deliver it again"
        );
    }
}

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

use futures_lite::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        BasicRejectOptions, ConfirmSelectOptions,
    },
    types::FieldTable,
};
use shared::{AmqpError, Shutdown, cli::print_line};
use tracing::warn;

use super::{MAX_FIB_INPUT, RPC_QUEUE, fib};

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
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            _ = shutdown.recv() => return Ok(()),
        };
        match request {
            Some(Ok(request)) => answer(channel, request).await?,
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
}

/// What a request asks for, or why it cannot be answered.
fn parse_request(request: &Delivery) -> Result<(u64, String), String> {
    let Some(reply_to) = request.properties.reply_to() else {
        return Err("it has no reply_to, so the answer could not be sent".to_owned());
    };
    let body = String::from_utf8_lossy(&request.data);
    match body.trim().parse::<u64>() {
        Ok(n) if n <= MAX_FIB_INPUT => Ok((n, reply_to.to_string())),
        _ => Err(format!(
            "its body {body:?} is not a whole number from 0 to {MAX_FIB_INPUT}"
        )),
    }
}

async fn answer(channel: &Channel, request: Delivery) -> anyhow::Result<()> {
    let (n, reply_to) = match parse_request(&request) {
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
    let response = fib(n).unwrap_or_default();
    let mut properties = BasicProperties::default();
    if let Some(id) = request.properties.correlation_id() {
        properties = properties.with_correlation_id(id.clone());
    }
    let confirm = channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            response.to_string().as_bytes(),
            properties,
        )
        .await
        .map_err(AmqpError::broker("sending the reply"))?;
    match confirm
        .await
        .map_err(AmqpError::broker("waiting for the reply's confirm"))?
    {
        Confirmation::Ack(None) | Confirmation::NotRequested => {}
        // The caller's queue is gone (it timed out and left): nobody can
        // take this answer, and asking again would not change that.
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
            warn!("the caller's reply queue '{reply_to}' is gone; its answer is dropped");
        }
        Confirmation::Nack(None) => {
            return Err(AmqpError::Nacked {
                routing_key: reply_to,
            }
            .into());
        }
    }
    request
        .ack(BasicAckOptions::default())
        .await
        .map_err(AmqpError::broker("acking the request"))?;
    Ok(())
}

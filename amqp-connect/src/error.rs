//! Everything that can go wrong between us and RabbitMQ, phrased for the
//! user, and how to read a lapin error: the broker's reply inside it, and
//! whether it is the kind lapin's recovery repairs.

use lapin::{ChannelState, ErrorKind, protocol::AMQPError};
use thiserror::Error;

/// Everything that can go wrong between us and RabbitMQ, phrased for the user.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AmqpError {
    #[error(
        "invalid AMQP URL '{url}': {reason}; expected amqp://USER:PASSWORD@HOST:PORT/VHOST, e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    InvalidUrl { url: String, reason: String },

    #[error(
        "RabbitMQ at {url} refused the login of user '{user}' (vhost '{vhost}'): ACCESS_REFUSED; check the user name and password in {setting}"
    )]
    AccessRefused {
        url: String,
        user: String,
        vhost: String,
        /// Where the URL came from, e.g. `--amqp-url / AMQP_URL`.
        setting: &'static str,
    },

    #[error(
        "RabbitMQ at {url} refused user '{user}' access to vhost '{vhost}' ({detail}); create the vhost or grant access: rabbitmqctl set_permissions -p {vhost} {user} \".*\" \".*\" \".*\""
    )]
    VhostNotAllowed {
        url: String,
        user: String,
        vhost: String,
        detail: String,
    },

    #[error(
        "RabbitMQ is not reachable at {url} (gave up after {waited_secs}s: {cause}); start one with `docker compose up -d rabbitmq` or `rabbitmq-server -detached`, or point {setting} at a running broker"
    )]
    Unreachable {
        url: String,
        waited_secs: f64,
        cause: String,
        setting: &'static str,
    },

    #[error(
        "RabbitMQ refused to declare queue '{queue}': a queue that is neither durable nor exclusive is a deprecated feature this broker denies (transient_nonexcl_queues, denied by default since RabbitMQ 4.3); declare it durable with --durable (producer and consumer both), or permit it again with `deprecated_features.permit.transient_nonexcl_queues = true` in rabbitmq.conf"
    )]
    TransientQueueDenied { queue: String },

    #[error(
        "exchange '{exchange}' already exists with different properties ({detail}); we declare it as a non-durable '{kind}' exchange: delete the old one first (rabbitmqctl delete_exchange {exchange}) or use another name"
    )]
    ExchangeMismatch {
        exchange: String,
        kind: String,
        detail: String,
    },

    #[error("queue '{queue}' already exists with different properties ({detail}); {fix}")]
    QueueMismatch {
        queue: String,
        detail: String,
        fix: String,
    },

    #[error(
        "RabbitMQ returned a message published to exchange '{exchange}' with routing key '{routing_key}' ({reply}): no queue is bound to receive it; declare the queue first or check its name"
    )]
    Returned {
        exchange: String,
        routing_key: String,
        reply: String,
    },

    #[error(
        "RabbitMQ refused (nacked) a message for '{routing_key}': the broker could not store it; see the broker log"
    )]
    Nacked { routing_key: String },

    #[error(
        "RabbitMQ cancelled our consumer on queue '{queue}' (was the queue deleted?); restart to declare it again"
    )]
    ConsumerCancelled { queue: String },

    #[error("could not write the message to the output: {0}")]
    Output(String),

    #[error("could not read the messages to publish: {0}")]
    Input(String),

    #[error("RabbitMQ error while {action}: {source}")]
    Broker {
        action: &'static str,
        #[source]
        source: lapin::Error,
    },
}

impl AmqpError {
    /// Wraps a lapin error with what we were doing when it happened.
    pub fn broker(action: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| AmqpError::Broker { action, source }
    }
}

/// The AMQP reply (code and text) inside a lapin error, if the broker sent one.
pub fn amqp_error(error: &lapin::Error) -> Option<&AMQPError> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => Some(amqp),
        _ => None,
    }
}

/// True for errors that mean "the connection or channel went away" — the kind
/// lapin's recovery can repair — as opposed to a refusal by the broker.
///
/// That includes an operation on a channel lapin is still re-opening: a
/// publish that lands between the connection loss and the recovery fails
/// with the channel's `Reconnecting` state, and waiting for the recovery
/// (then sending again) is the fix, not giving up.
pub fn is_connection_error(error: &lapin::Error) -> bool {
    error.is_io_error()
        || matches!(
            error.kind(),
            ErrorKind::MissingHeartbeatError
                | ErrorKind::InvalidChannelState(ChannelState::Reconnecting, _)
        )
        || matches!(amqp_error(error).map(AMQPError::get_id), Some(320))
}

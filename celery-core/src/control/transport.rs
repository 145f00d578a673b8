//! The remote-control and events connection of each transport: kombu's
//! pidbox (a fanout exchange per node name) and the `celeryev` exchange,
//! on RabbitMQ (`amqp.rs`) and on Redis (`redis.rs`).
//!
//! It lives here, with remote control, rather than in `broker`: a broker is
//! how tasks travel, and knows nothing of remote control; remote control
//! needs a broker's connection, and this trait gives it one per transport.

pub mod amqp;
pub mod redis;

use std::future::Future;

use amqp_connect::{AmqpSettings, SecretUrl};

use super::mailbox::{Listen, Mailbox};
use crate::broker::{Broker, BrokerError, amqp::Amqp, redis::Redis};

/// A transport that can open the remote-control and events connection.
pub trait MailboxTransport: Broker {
    /// Opens the remote-control and events connection
    /// (`control/mailbox.rs`), listening as `listen` says; `settings`
    /// carries the connect timeout (and, for AMQP, everything else: the URL
    /// is `url`).
    fn mailbox(
        url: &str,
        settings: AmqpSettings,
        listen: Listen,
    ) -> impl Future<Output = Result<Mailbox, BrokerError>> + Send;
}

impl MailboxTransport for Amqp {
    async fn mailbox(
        url: &str,
        mut settings: AmqpSettings,
        listen: Listen,
    ) -> Result<Mailbox, BrokerError> {
        settings.url = SecretUrl::from(url);
        amqp::open(&settings, listen).await
    }
}

impl MailboxTransport for Redis {
    async fn mailbox(
        url: &str,
        settings: AmqpSettings,
        listen: Listen,
    ) -> Result<Mailbox, BrokerError> {
        redis::open(url, &(&settings).into(), listen).await
    }
}

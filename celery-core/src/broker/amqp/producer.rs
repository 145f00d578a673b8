//! Sending task messages with publisher confirms (`amqp_connect::publisher`):
//! nothing counts as sent before RabbitMQ has taken responsibility for it.

use std::{collections::HashSet, sync::Arc};

use lapin::Connection;

use super::{declare_celery_queue, properties_of};
use crate::{
    broker::{BrokerError, Producer},
    protocol::TaskMessage,
};
use amqp_connect::{AmqpSettings, ConfirmedPublisher, Outgoing, QueueType, connect_amqp};

/// Unconfirmed messages in flight when sending many tasks.
const MAX_IN_FLIGHT: usize = 4096;

/// Sends task messages with publisher confirms.
#[derive(Debug)]
pub struct AmqpProducer {
    connection: Arc<Connection>,
    queue_type: QueueType,
    publisher: ConfirmedPublisher,
    declared: HashSet<String>,
}

impl AmqpProducer {
    pub async fn connect(settings: AmqpSettings) -> Result<Self, BrokerError> {
        let connection = Arc::new(connect_amqp(&settings, "celery-core").await?);
        let publisher = ConfirmedPublisher::open(&connection, MAX_IN_FLIGHT).await?;
        Ok(Self {
            connection,
            queue_type: settings.queue_type,
            publisher,
            declared: HashSet::new(),
        })
    }

    async fn publish(&mut self, message: &TaskMessage, queue: &str) -> Result<(), BrokerError> {
        // Declared once per queue and connection, as kombu caches it.
        if !self.declared.contains(queue) {
            declare_celery_queue(&self.connection, queue, self.queue_type).await?;
            self.declared.insert(queue.to_owned());
        }
        let outgoing = Outgoing::to_queue(queue, message.body_json(), properties_of(message));
        Ok(self.publisher.publish(outgoing).await?)
    }
}

impl Producer for AmqpProducer {
    async fn send_batch(
        &mut self,
        messages: &[TaskMessage],
        queue: &str,
    ) -> Result<(), BrokerError> {
        for message in messages {
            self.publish(message, queue).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BrokerError> {
        Ok(self.publisher.flush().await?)
    }

    async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

//! The AMQP transport (RabbitMQ): Celery's exchange, queue and headers,
//! publisher confirms on the way in, batched acks on the way out.
//!
//! Topology is Celery's (`celery-protocol.md` §C): a durable direct exchange
//! and a durable queue of the same name (`celery`), bound with the queue name
//! as routing key. Messages go to the default exchange `""` with the queue
//! name as routing key, headers in a field table, the JSON body raw.
//!
//! Acks are where throughput is won. Acking each task on its own costs the
//! broker a frame per task and caps a consumer near 25,000 msgs/s here. So
//! each queue's [`AckTracker`] acks the longest run of finished tasks with a
//! single `multiple = true` ack — but only a *contiguous* run, because
//! `multiple` also acks every lower tag, and a lower tag may belong to a task
//! still running or held for its ETA. Finished tasks stuck behind such a gap
//! are acked one by one after a short wait.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_lite::StreamExt;
use lapin::{
    Acker, BasicProperties, Channel, Connection, ExchangeKind,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
        BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{BrokerError, Delivery, SettleToken, Settlement};
use crate::protocol::{
    TaskMessage, TaskProperties, amqp_table, message::task_id_of, redis_envelope::Received,
};
use shared::{
    AmqpError, AmqpSettings, ConfirmedPublisher, Outgoing, amqp::amqp_error, connect_amqp,
};

/// Unconfirmed messages in flight when sending many tasks.
const MAX_IN_FLIGHT: usize = 4096;

/// Declares Celery's topology for `queue`: exchange and queue of that name
/// (direct, durable), bound by the queue name.
///
/// A queue that already exists with extra arguments (a dead-letter exchange,
/// a length limit) is used as it is: redeclaring it without them would fail
/// with PRECONDITION_FAILED, and its arguments are the operator's choice.
pub async fn declare_celery_queue(connection: &Connection, queue: &str) -> Result<(), AmqpError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
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
            Ok(())
        }
        Err(error) if amqp_error(&error).map(|e| e.get_id()) == Some(406) => {
            debug!(
                queue,
                "queue exists with other arguments; using it as it is"
            );
            Ok(())
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

/// Sends task messages with publisher confirms.
#[derive(Debug)]
pub struct AmqpProducer {
    connection: Connection,
    publisher: ConfirmedPublisher,
    declared: HashSet<String>,
}

impl AmqpProducer {
    pub async fn connect(settings: AmqpSettings) -> Result<Self, BrokerError> {
        let connection = connect_amqp(&settings, "celery-sms-demo").await?;
        let publisher = ConfirmedPublisher::open(&connection, MAX_IN_FLIGHT).await?;
        Ok(Self {
            connection,
            publisher,
            declared: HashSet::new(),
        })
    }

    pub async fn send(&mut self, message: &TaskMessage, queue: &str) -> Result<(), BrokerError> {
        // Declared once per queue and connection, as kombu caches it.
        if !self.declared.contains(queue) {
            declare_celery_queue(&self.connection, queue).await?;
            self.declared.insert(queue.to_owned());
        }
        let outgoing = Outgoing::to_queue(queue, message.body_json(), properties_of(message));
        Ok(self.publisher.publish(outgoing).await?)
    }

    pub async fn flush(&mut self) -> Result<(), BrokerError> {
        Ok(self.publisher.flush().await?)
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
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

/// Identifies one delivery: its queue's consumer, its tag and its acker.
#[derive(Debug)]
pub struct AmqpToken {
    queue: usize,
    tag: u64,
    generation: u64,
    acker: Acker,
    held: bool,
}

enum Control {
    Settle(AmqpToken, Settlement),
    /// A task is held for its ETA (+1) or no longer (-1): adjust the prefetch.
    Hold(i32),
}

/// What the consumer needs to know.
#[derive(Debug, Clone)]
pub struct AmqpConsumerConfig {
    pub settings: AmqpSettings,
    pub queues: Vec<String>,
    pub prefetch: u16,
}

/// The AMQP side of a running worker: one channel and consumer per queue.
#[derive(Clone)]
pub struct AmqpConsumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConsumer").finish_non_exhaustive()
    }
}

struct Inner {
    connection: Connection,
    controls: Vec<mpsc::UnboundedSender<Control>>,
    stop_fetching: CancellationToken,
    closed: CancellationToken,
    done: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl AmqpConsumer {
    pub async fn start(
        config: AmqpConsumerConfig,
    ) -> Result<(AmqpConsumer, mpsc::Receiver<Delivery>), BrokerError> {
        let connection = connect_amqp(&config.settings, "celery-sms-demo worker").await?;
        let (deliveries_tx, deliveries_rx) = mpsc::channel(usize::from(config.prefetch).max(1));
        let stop_fetching = CancellationToken::new();
        let closed = CancellationToken::new();
        let mut controls = Vec::new();
        let mut handles = Vec::new();
        for (index, queue) in config.queues.iter().enumerate() {
            declare_celery_queue(&connection, queue).await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(AmqpError::broker("opening a channel"))?;
            // The prefetch window: RabbitMQ pushes at most this many unacked
            // messages to us. Celery's prefetch = concurrency × multiplier.
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await
                .map_err(AmqpError::broker("setting the prefetch count"))?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::broker("starting the consumer"))?;
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            controls.push(control_tx);
            let worker = QueueConsumer {
                index,
                queue: queue.clone(),
                channel,
                consumer,
                prefetch: config.prefetch,
                held: 0,
                generation: 0,
                last_tag: 0,
                unsettled: 0,
                tracker: AckTracker::default(),
            };
            handles.push(tokio::spawn(worker.run(
                deliveries_tx.clone(),
                control_rx,
                stop_fetching.clone(),
                closed.clone(),
            )));
        }
        let consumer = AmqpConsumer {
            inner: Arc::new(Inner {
                connection,
                controls,
                stop_fetching,
                closed,
                done: tokio::sync::Mutex::new(handles),
            }),
        };
        Ok((consumer, deliveries_rx))
    }

    pub fn settle(&self, token: AmqpToken, settlement: Settlement) {
        if let Some(control) = self.inner.controls.get(token.queue) {
            if token.held {
                let _ = control.send(Control::Hold(-1));
            }
            let _ = control.send(Control::Settle(token, settlement));
        }
    }

    /// A task held for its ETA should not use up the prefetch window:
    /// raise the channel's prefetch by one while it waits (as Celery does).
    pub fn release_slot(&self, token: &mut AmqpToken) {
        if !token.held
            && let Some(control) = self.inner.controls.get(token.queue)
        {
            token.held = true;
            let _ = control.send(Control::Hold(1));
        }
    }

    /// Stops taking new deliveries (basic.cancel); settling continues.
    pub fn stop_fetching(&self) {
        self.inner.stop_fetching.cancel();
    }

    /// Writes the last acks, then closes the channels and the connection.
    /// Whatever is still unacked goes back to the queue (RabbitMQ requeues
    /// the unacked messages of a closed channel).
    pub async fn close(&self) {
        self.inner.stop_fetching.cancel();
        self.inner.closed.cancel();
        let handles = std::mem::take(&mut *self.inner.done.lock().await);
        for handle in handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        let _ = self.inner.connection.close(200, "bye".into()).await;
    }
}

/// One queue's consumer loop: forwards deliveries, applies settlements.
struct QueueConsumer {
    index: usize,
    queue: String,
    channel: Channel,
    consumer: lapin::Consumer,
    prefetch: u16,
    held: i32,
    generation: u64,
    /// The highest delivery tag seen on the current channel.
    last_tag: u64,
    /// Deliveries of the current channel not yet settled (a reconnect
    /// hands these back to RabbitMQ, which delivers them again).
    unsettled: u64,
    tracker: AckTracker,
}

impl QueueConsumer {
    async fn run(
        mut self,
        deliveries: mpsc::Sender<Delivery>,
        mut controls: mpsc::UnboundedReceiver<Control>,
        stop_fetching: CancellationToken,
        closed: CancellationToken,
    ) {
        let mut fetching = true;
        // Acks go out on a short tick rather than per settlement: finished
        // tasks pile up for a few milliseconds and leave as one `multiple`
        // ack instead of one frame each.
        let mut tick = tokio::time::interval(ACK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                control = controls.recv() => match control {
                    Some(control) => {
                        self.apply(control).await;
                        // Take every settlement already waiting, then ack once.
                        while let Ok(control) = controls.try_recv() {
                            self.apply(control).await;
                        }
                        // ...or sooner, before the broker's window runs dry.
                        let enough = (usize::from(self.prefetch) / 2).clamp(1, ACK_BATCH);
                        if self.tracker.finished.len() >= enough {
                            self.tracker.flush(false).await;
                        }
                    }
                    None => break,
                },
                () = stop_fetching.cancelled(), if fetching => {
                    fetching = false;
                    let tag = self.consumer.tag();
                    let _ = self.channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                }
                () = closed.cancelled() => {
                    while let Ok(control) = controls.try_recv() {
                        self.apply(control).await;
                    }
                    self.tracker.flush(true).await;
                    let _ = self.channel.close(200, "bye".into()).await;
                    break;
                }
                _ = tick.tick() => self.tracker.flush(true).await,
                next = self.consumer.next(), if fetching => match next {
                    Some(Ok(delivery)) => {
                        if delivery.acker.poisoned() {
                            continue; // from before a reconnect: RabbitMQ redelivers it
                        }
                        // lapin recovers a dropped connection transparently: the
                        // stream goes on, but on a new channel whose delivery tags
                        // restart at 1. A tag that does not increase is how we
                        // notice, and acks of the old channel must not leak into it.
                        if delivery.delivery_tag <= self.last_tag {
                            self.new_channel_incarnation();
                        }
                        self.last_tag = delivery.delivery_tag;
                        let token = AmqpToken {
                            queue: self.index,
                            tag: delivery.delivery_tag,
                            generation: self.generation,
                            acker: delivery.acker.clone(),
                            held: false,
                        };
                        let forwarded = Delivery {
                            received: decode_delivery(&delivery.properties, &delivery.data),
                            queue: self.queue.clone(),
                            redelivered: delivery.redelivered,
                            token: SettleToken::Amqp(token),
                        };
                        if deliveries.send(forwarded).await.is_err() {
                            fetching = false;
                        }
                        self.unsettled += 1;
                    }
                    Some(Err(error)) => {
                        // The loss itself is logged once, by the connection's watch.
                        debug!(%error, queue = %self.queue, "the consumer stream failed; waiting for lapin to recover");
                        if let Err(error) = self.channel.wait_for_recovery(error).await {
                            warn!(%error, "RabbitMQ did not come back; this queue stops consuming");
                            fetching = false;
                            continue;
                        }
                        self.new_channel_incarnation();
                    }
                    None => fetching = false,
                },
            }
        }
    }

    /// After a reconnect: tags restart at 1 on the new channel, and acks of
    /// the old one are void (RabbitMQ redelivers those messages).
    fn new_channel_incarnation(&mut self) {
        self.generation += 1;
        self.tracker = AckTracker::default();
        self.held = 0;
        self.last_tag = 0;
        info!(
            "Consuming '{}' again after the reconnect: {} task(s) not acked before it will be delivered again",
            self.queue, self.unsettled
        );
        self.unsettled = 0;
    }

    async fn apply(&mut self, control: Control) {
        match control {
            Control::Settle(token, settlement)
                if token.generation == self.generation && !token.acker.poisoned() =>
            {
                self.unsettled = self.unsettled.saturating_sub(1);
                self.tracker
                    .settle(token.tag, token.acker, settlement)
                    .await;
            }
            Control::Settle(..) => {} // settled after a reconnect: already void
            Control::Hold(delta) => {
                self.held = (self.held + delta).max(0);
                let prefetch =
                    (i32::from(self.prefetch) + self.held).clamp(1, i32::from(u16::MAX)) as u16;
                if let Err(error) = self
                    .channel
                    .basic_qos(prefetch, BasicQosOptions::default())
                    .await
                {
                    debug!(%error, "could not adjust the prefetch");
                }
            }
        }
    }
}

/// How often finished tasks are acked, and how many trigger an ack at once.
const ACK_INTERVAL: Duration = Duration::from_millis(5);
const ACK_BATCH: usize = 256;

/// How long a finished task may wait behind an unfinished lower tag before
/// it is acked on its own.
const STRAGGLER_WAIT: Duration = Duration::from_millis(50);

/// Tracks which delivery tags are finished and acks them in runs.
#[derive(Default)]
struct AckTracker {
    /// The lowest tag not yet acked (tags start at 1 on each channel).
    next: u64,
    /// Finished, not yet acked: tag → (acker, when it finished).
    finished: BTreeMap<u64, (Acker, Instant)>,
    /// Above `next` but already settled on their own (rejected or acked singly).
    settled_alone: BTreeSet<u64>,
}

impl AckTracker {
    async fn settle(&mut self, tag: u64, acker: Acker, settlement: Settlement) {
        if self.next == 0 {
            self.next = 1;
        }
        match settlement {
            Settlement::Ack => {
                self.finished.insert(tag, (acker, Instant::now()));
            }
            Settlement::Reject | Settlement::Requeue => {
                // requeue=false: dropped, or dead-lettered if the queue has a DLX.
                let requeue = settlement == Settlement::Requeue;
                if let Err(error) = acker.reject(BasicRejectOptions { requeue }).await {
                    debug!(%error, "reject failed; RabbitMQ will redeliver the message");
                }
                self.settled_alone.insert(tag);
            }
        }
    }

    /// Acks the contiguous run of finished tags with one `multiple` ack; with
    /// `stragglers`, also acks on their own those stuck behind a gap.
    async fn flush(&mut self, stragglers: bool) {
        if self.next == 0 {
            return;
        }
        if !self.finished.is_empty() {
            // These tasks' log lines leave before their acks: a worker killed
            // right after an ack has still logged what it ran.
            shared::logging::flush();
        }
        let mut last = None;
        loop {
            if let Some((acker, _)) = self.finished.remove(&self.next) {
                last = Some(acker);
            } else if !self.settled_alone.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        if let Some(acker) = last {
            ack(&acker, true).await;
        }
        if stragglers {
            let due: Vec<u64> = self
                .finished
                .iter()
                .filter(|(_, (_, since))| since.elapsed() >= STRAGGLER_WAIT)
                .map(|(tag, _)| *tag)
                .collect();
            for tag in due {
                if let Some((acker, _)) = self.finished.remove(&tag) {
                    ack(&acker, false).await;
                    self.settled_alone.insert(tag);
                }
            }
        }
    }
}

async fn ack(acker: &Acker, multiple: bool) {
    match acker.ack(BasicAckOptions { multiple }).await {
        Ok(true) => {}
        Ok(false) | Err(_) => debug!("ack lost with the connection; RabbitMQ will redeliver"),
    }
}

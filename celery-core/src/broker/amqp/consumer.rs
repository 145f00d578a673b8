//! The worker's side of the AMQP transport: one channel and one consumer per
//! queue, each run by a `QueueConsumer` loop that forwards deliveries and
//! applies settlements.
//!
//! Acks are where throughput is won. Acking each task on its own costs the
//! broker a frame per task and caps a consumer near 25,000 msgs/s here. So
//! each queue's `AckTracker` finds the longest run of finished tasks, and
//! one `multiple = true` ack covers it — but only a *contiguous* run, since
//! `multiple` also acks every lower tag, and a lower tag may belong to a task
//! still running or held for its ETA. Finished tasks stuck behind such a gap
//! are acked one by one after a short wait.
//!
//! A task held for its ETA must not keep its slot in the prefetch window
//! (Celery raises the window by one per held task). How depends on the kind
//! of window, see `open_consumer` and `QueueConsumer::resubscribe`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_lite::StreamExt;
use lapin::{
    Acker, Channel, Connection,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
        BasicRejectOptions,
    },
    types::FieldTable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ack_tracker::{Ack, AckTracker},
    declare_celery_queue, decode_delivery,
};
use crate::broker::{BrokerError, Consumer, Delivery, Settlement};
use amqp_connect::{AmqpError, AmqpSettings, QueueType, connect_amqp};

/// How often finished tasks are acked, and how many trigger an ack at once.
const ACK_INTERVAL: Duration = Duration::from_millis(5);
const ACK_BATCH: usize = 256;

/// Identifies one delivery: its queue's consumer, its tag and its acker.
#[derive(Debug)]
pub struct AmqpToken {
    queue: usize,
    tag: u64,
    generation: u64,
    /// Which consumer of the channel delivered it (see [`QueueConsumer::resubscribe`]).
    subscription: u64,
    acker: Acker,
    held: bool,
}

enum Control {
    Settle(AmqpToken, Settlement),
    /// A task of this subscription is now held for its ETA (`held`), or no
    /// longer: its slot in the prefetch window is freed, or taken back.
    Hold {
        subscription: u64,
        held: bool,
    },
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
    ) -> Result<(AmqpConsumer, mpsc::Receiver<Delivery<AmqpToken>>), BrokerError> {
        let connection = connect_amqp(&config.settings, "celery worker").await?;
        let (deliveries_tx, deliveries_rx) = mpsc::channel(usize::from(config.prefetch).max(1));
        let stop_fetching = CancellationToken::new();
        let closed = CancellationToken::new();
        let mut controls = Vec::new();
        let mut handles = Vec::new();
        for (index, queue) in config.queues.iter().enumerate() {
            let queue_type =
                declare_celery_queue(&connection, queue, config.settings.queue_type).await?;
            let opened = open_consumer(&connection, queue, config.prefetch, queue_type).await?;
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            controls.push(control_tx);
            let worker = QueueConsumer::new(index, queue.clone(), opened, config.prefetch);
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
}

impl Consumer for AmqpConsumer {
    type Token = AmqpToken;

    fn settle(&self, token: AmqpToken, settlement: Settlement) {
        if let Some(control) = self.inner.controls.get(token.queue) {
            if token.held {
                let _ = control.send(Control::Hold {
                    subscription: token.subscription,
                    held: false,
                });
            }
            let _ = control.send(Control::Settle(token, settlement));
        }
    }

    /// A task held for its ETA should not use up the prefetch window: it
    /// frees its slot while it waits (as Celery does).
    fn release_slot(&self, token: &mut AmqpToken) {
        if !token.held
            && let Some(control) = self.inner.controls.get(token.queue)
        {
            token.held = true;
            let _ = control.send(Control::Hold {
                subscription: token.subscription,
                held: true,
            });
        }
    }

    /// Stops taking new deliveries (basic.cancel); settling continues.
    fn stop_fetching(&self) {
        self.inner.stop_fetching.cancel();
    }

    /// Nothing to do: deliveries never started stay unacked, and RabbitMQ
    /// requeues them when [`close`](Consumer::close) closes their channel.
    async fn give_back(&self, _tokens: Vec<AmqpToken>) {}

    /// Closing the channels requeues everything unacked at once.
    async fn abandon(&self) {
        self.close().await;
    }

    /// Writes the last acks, then closes the channels and the connection.
    /// Whatever is still unacked goes back to the queue (RabbitMQ requeues
    /// the unacked messages of a closed channel).
    async fn close(&self) {
        self.inner.stop_fetching.cancel();
        self.inner.closed.cancel();
        let handles = std::mem::take(&mut *self.inner.done.lock().await);
        for handle in handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        let _ = self.inner.connection.close(200, "bye".into()).await;
    }
}

/// Opens `queue`'s channel and consumer with its prefetch window: RabbitMQ
/// pushes at most this many unacked messages to us (Celery's prefetch =
/// concurrency × multiplier).
///
/// On a classic queue the window is channel-wide (`global`), as Celery sets
/// it on RabbitMQ: only a channel-wide limit can be raised while the
/// consumer runs, which is how a task held for its ETA frees its slot (one
/// consumer per channel, so the two kinds count the same messages). A
/// quorum queue refuses a channel-wide limit with `540 NOT_IMPLEMENTED`, a
/// connection error (measured on 3.10), so there, and on a queue of unknown
/// type (`None`: it existed with other arguments), the window is per
/// consumer, as with Celery's `worker_detect_quorum_queues`.
async fn open_consumer(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
    queue_type: Option<QueueType>,
) -> Result<(Channel, lapin::Consumer, BasicQosOptions), BrokerError> {
    let qos = BasicQosOptions {
        global: queue_type == Some(QueueType::Classic),
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening a channel"))?;
    let consumer = subscribe(&channel, queue, prefetch, qos).await?;
    Ok((channel, consumer, qos))
}

/// Sets the window, then starts a consumer on `queue`: a per-consumer
/// window applies to the consumers started after it.
async fn subscribe(
    channel: &Channel,
    queue: &str,
    prefetch: u16,
    qos: BasicQosOptions,
) -> Result<lapin::Consumer, AmqpError> {
    channel
        .basic_qos(prefetch, qos)
        .await
        .map_err(AmqpError::broker("setting the prefetch count"))?;
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("starting the consumer"))
}

/// One queue's consumer loop: forwards deliveries, applies settlements.
struct QueueConsumer {
    index: usize,
    queue: String,
    channel: Channel,
    consumer: lapin::Consumer,
    /// Channel-wide or per-consumer prefetch (see [`open_consumer`]).
    qos: BasicQosOptions,
    prefetch: u16,
    /// Tasks held for their ETA, on this channel.
    held: i32,
    /// Counts the consumers started on this channel (see [`Self::resubscribe`]).
    subscription: u64,
    /// A task of the current consumer is held and its window is per consumer.
    resubscribe_due: bool,
    /// False once the worker stops taking tasks, or the consumer has ended.
    fetching: bool,
    generation: u64,
    /// The highest delivery tag seen on the current channel.
    last_tag: u64,
    /// Deliveries of the current channel not yet settled (a reconnect
    /// hands these back to RabbitMQ, which delivers them again).
    unsettled: u64,
    tracker: AckTracker,
    /// The acker of every finished delivery not acked yet, by tag.
    ackers: HashMap<u64, Acker>,
}

impl QueueConsumer {
    fn new(
        index: usize,
        queue: String,
        (channel, consumer, qos): (Channel, lapin::Consumer, BasicQosOptions),
        prefetch: u16,
    ) -> QueueConsumer {
        QueueConsumer {
            index,
            queue,
            channel,
            consumer,
            qos,
            prefetch,
            held: 0,
            subscription: 0,
            resubscribe_due: false,
            fetching: true,
            generation: 0,
            last_tag: 0,
            unsettled: 0,
            tracker: AckTracker::default(),
            ackers: HashMap::new(),
        }
    }

    async fn run(
        mut self,
        deliveries: mpsc::Sender<Delivery<AmqpToken>>,
        mut controls: mpsc::UnboundedReceiver<Control>,
        stop_fetching: CancellationToken,
        closed: CancellationToken,
    ) {
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
                        if self.tracker.waiting() >= enough {
                            self.ack(false).await;
                        }
                        if self.resubscribe_due && self.fetching {
                            self.resubscribe(&deliveries).await;
                        }
                    }
                    None => break,
                },
                () = stop_fetching.cancelled(), if self.fetching => {
                    self.fetching = false;
                    let tag = self.consumer.tag();
                    let _ = self.channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                }
                () = closed.cancelled() => {
                    while let Ok(control) = controls.try_recv() {
                        self.apply(control).await;
                    }
                    self.ack(true).await;
                    let _ = self.channel.close(200, "bye".into()).await;
                    break;
                }
                _ = tick.tick() => self.ack(true).await,
                next = self.consumer.next(), if self.fetching => match next {
                    Some(Ok(delivery)) => self.forward(delivery, &deliveries).await,
                    Some(Err(error)) => {
                        // The loss itself is logged once, by the connection's watch.
                        debug!(%error, queue = %self.queue, "the consumer stream failed; waiting for lapin to recover");
                        if let Err(error) = self.channel.wait_for_recovery(error).await {
                            warn!(%error, "RabbitMQ did not come back; this queue stops consuming");
                            self.fetching = false;
                            continue;
                        }
                        self.new_channel_incarnation();
                    }
                    None => self.fetching = false,
                },
            }
        }
    }

    /// Hands one delivery to the worker, with the token that settles it.
    async fn forward(
        &mut self,
        delivery: lapin::message::Delivery,
        deliveries: &mpsc::Sender<Delivery<AmqpToken>>,
    ) {
        if delivery.acker.poisoned() {
            return; // from before a reconnect: RabbitMQ redelivers it
        }
        // lapin recovers a dropped connection transparently: the stream goes
        // on, but on a new channel whose delivery tags restart at 1. A tag
        // that does not increase is how we notice, and acks of the old
        // channel must not leak into it.
        if delivery.delivery_tag <= self.last_tag {
            self.new_channel_incarnation();
        }
        self.last_tag = delivery.delivery_tag;
        let token = AmqpToken {
            queue: self.index,
            tag: delivery.delivery_tag,
            generation: self.generation,
            subscription: self.subscription,
            acker: delivery.acker.clone(),
            held: false,
        };
        let forwarded = Delivery {
            received: decode_delivery(&delivery.properties, &delivery.data),
            queue: self.queue.clone(),
            redelivered: delivery.redelivered,
            token,
        };
        if deliveries.send(forwarded).await.is_err() {
            self.fetching = false;
        }
        self.unsettled += 1;
    }

    /// Frees the slots of held tasks when the window is per consumer.
    ///
    /// RabbitMQ applies a per-consumer window to the consumers started after
    /// it (measured on 3.10: raising 1 to 3 on a running consumer left it at
    /// 1), and a quorum queue accepts no other kind. So instead of widening
    /// the window, the consumer whose window holds a task waiting for its
    /// ETA is replaced by a fresh one with the whole window. The held tasks
    /// stay unacked on this channel and no longer count against any
    /// consumer's window; delivery tags belong to the channel, so they are
    /// acked later as before. Until the old consumer's running tasks finish,
    /// they and the new window are both in flight: at most twice the
    /// prefetch, for a moment.
    ///
    /// The old consumer is cancelled *before* the new one starts: RabbitMQ
    /// delivers nothing to it after its `cancel-ok`, and what it delivered
    /// before is already in its stream, so forwarding that first keeps the
    /// tags in order for [`Self::forward`]'s reconnect check.
    async fn resubscribe(&mut self, deliveries: &mpsc::Sender<Delivery<AmqpToken>>) {
        self.resubscribe_due = false;
        let tag = self.consumer.tag();
        if let Err(error) = self
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            // Lost with the connection: lapin's recovery brings the consumer back.
            debug!(%error, queue = %self.queue, "could not restart the consumer");
            return;
        }
        while let Some(Ok(delivery)) = self.consumer.next().await {
            self.forward(delivery, deliveries).await;
        }
        // The old consumer is gone from lapin's topology, so if the
        // connection drops right here its recovery brings back no consumer
        // at all: wait for it, and start the new one on the new connection.
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            match subscribe(&self.channel, &self.queue, self.prefetch, self.qos).await {
                Ok(consumer) => {
                    self.consumer = consumer;
                    self.subscription += 1;
                    debug!(queue = %self.queue, held = self.held, "consumer restarted with a free window");
                    return;
                }
                Err(AmqpError::Broker { source, .. })
                    if attempts < 3
                        && self.channel.wait_for_recovery(source.clone()).await.is_ok() => {}
                Err(error) => break error,
            }
        };
        warn!(%error, queue = %self.queue, "could not restart the consumer; this queue stops consuming");
        self.fetching = false;
    }

    /// After a reconnect: tags restart at 1 on the new channel, and acks of
    /// the old one are void (RabbitMQ redelivers those messages).
    fn new_channel_incarnation(&mut self) {
        self.generation += 1;
        self.tracker = AckTracker::default();
        self.ackers.clear();
        self.held = 0;
        self.resubscribe_due = false;
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
                match settlement {
                    Settlement::Ack => {
                        self.tracker.finished(token.tag, Instant::now());
                        self.ackers.insert(token.tag, token.acker);
                    }
                    Settlement::Reject | Settlement::Requeue => {
                        // requeue=false: dropped, or dead-lettered if the queue has a DLX.
                        let requeue = settlement == Settlement::Requeue;
                        if let Err(error) = token.acker.reject(BasicRejectOptions { requeue }).await
                        {
                            debug!(%error, "reject failed; RabbitMQ will redeliver the message");
                        }
                        self.tracker.settled_alone(token.tag);
                    }
                }
            }
            Control::Settle(..) => {} // settled after a reconnect: already void
            Control::Hold { subscription, held } => {
                self.held = (self.held + if held { 1 } else { -1 }).max(0);
                if self.qos.global {
                    // A channel-wide window (classic queues) widens at once.
                    let prefetch =
                        (i32::from(self.prefetch) + self.held).clamp(1, i32::from(u16::MAX)) as u16;
                    if let Err(error) = self.channel.basic_qos(prefetch, self.qos).await {
                        debug!(%error, "could not adjust the prefetch");
                    }
                } else if held && subscription == self.subscription {
                    self.resubscribe_due = true;
                }
            }
        }
    }

    /// Sends the acks the tracker says are due; with `stragglers`, also those
    /// of finished tasks waiting too long behind an unfinished one.
    async fn ack(&mut self, stragglers: bool) {
        let due = self.tracker.flush(Instant::now(), stragglers);
        if due.is_empty() {
            return;
        }
        // These tasks' log lines leave before their acks: a worker killed
        // right after an ack has still logged what it ran.
        crate::logs::flush();
        for ack in due {
            let (tag, multiple) = match ack {
                Ack::Through(tag) => (tag, true),
                Ack::One(tag) => (tag, false),
            };
            let Some(acker) = self.ackers.remove(&tag) else {
                continue;
            };
            if multiple {
                // The ones below are covered by this ack.
                self.ackers.retain(|other, _| *other > tag);
            }
            match acker.ack(BasicAckOptions { multiple }).await {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    debug!("ack lost with the connection; RabbitMQ will redeliver")
                }
            }
        }
    }
}

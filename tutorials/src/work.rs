//! Tutorial 2, work queues: tasks dealt out to competing workers.
//!
//! ```python
//! channel.queue_declare(queue="task_queue", durable=True, arguments={"x-queue-type": "quorum"})
//! def callback(ch, method, properties, body):
//!     print(f" [x] Received {body.decode()}")
//!     time.sleep(body.count(b"."))
//!     print(" [x] Done")
//!     ch.basic_ack(delivery_tag=method.delivery_tag)
//! channel.basic_qos(prefetch_count=1)
//! channel.basic_consume(queue="task_queue", on_message_callback=callback)
//! ```
//!
//! Three settings make this a work queue rather than a broadcast:
//!
//! * **Durable queue, persistent messages**: tasks survive a broker restart.
//!   The tutorial's queue is a quorum queue today (`x-queue-type: quorum`),
//!   replicated when RabbitMQ runs as a cluster; durable, it is also what
//!   RabbitMQ 4.3+ still allows by default.
//! * **Manual ack after the work**: a worker that dies mid-task never acked
//!   it, so the broker hands the task to another worker.
//! * **`prefetch_count=1`** (per consumer, not the deprecated global QoS): a
//!   worker gets its next task only after acking the last, so a busy worker
//!   is skipped instead of being dealt every other task. (Quorum queues
//!   support only this per-consumer kind.)
//!
//! The Python worker blocks in `time.sleep`; ours sleeps on the runtime's
//! timer, so Ctrl-C is heard while a task is running.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{
    Channel,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::{AmqpError, QueueSpec, Shutdown, cli::print_line};
use tracing::warn;

/// The queue both sides of tutorial 2 declare.
pub const TASK_QUEUE: &str = "task_queue";

/// `task_queue` as the tutorial declares it: a durable quorum queue.
pub fn task_queue() -> QueueSpec {
    QueueSpec::new(TASK_QUEUE).quorum()
}

/// A task's pretend work: one second per `.` in its body, as in the tutorial.
pub fn work_time(body: &[u8]) -> Duration {
    let dots = body.iter().filter(|&&byte| byte == b'.').count();
    Duration::from_secs(u64::try_from(dots).unwrap_or(u64::MAX))
}

/// How the worker loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C while idle, or after finishing the task in hand.
    Cleanly,
    /// A second Ctrl-C during a task: it was not acked, and goes back to the
    /// queue when our channel closes.
    TaskReturned,
}

/// Consumes `task_queue` one task at a time until Ctrl-C.
///
/// The first Ctrl-C during a task lets it finish and be acked (a warm
/// shutdown, as a Celery worker does); a second one stops at once.
pub async fn run_worker(
    channel: &Channel,
    prefetch: u16,
    shutdown: &mut Shutdown,
) -> anyhow::Result<Stopped> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(AmqpError::broker("setting the prefetch count"))?;
    let mut deliveries = channel
        .basic_consume(
            TASK_QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker("starting the consumer"))?;
    print_line(" [*] Waiting for messages. To exit press CTRL+C")?;
    loop {
        let delivery = tokio::select! {
            delivery = deliveries.next() => delivery,
            _ = shutdown.recv() => return Ok(Stopped::Cleanly),
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                return Err(AmqpError::Broker {
                    action: "receiving",
                    source: error,
                }
                .into());
            }
            None => {
                return Err(AmqpError::ConsumerCancelled {
                    queue: TASK_QUEUE.to_owned(),
                }
                .into());
            }
        };
        // `body.decode()`, except that bytes which are not UTF-8 show as `�`
        // instead of ending the worker with a UnicodeDecodeError.
        print_line(format_args!(
            " [x] Received {}",
            String::from_utf8_lossy(&delivery.data)
        ))?;
        let work = tokio::time::sleep(work_time(&delivery.data));
        tokio::pin!(work);
        let mut stopping = false;
        loop {
            tokio::select! {
                () = &mut work => break,
                signal = shutdown.recv() => {
                    if stopping {
                        warn!("{signal} again: stopping now; the task goes back to the queue");
                        return Ok(Stopped::TaskReturned);
                    }
                    warn!("{signal}: finishing the task in hand first (press Ctrl-C again to stop now)");
                    stopping = true;
                }
            }
        }
        print_line(" [x] Done")?;
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(AmqpError::broker("acking the task"))?;
        if stopping {
            return Ok(Stopped::Cleanly);
        }
    }
}

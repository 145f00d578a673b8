//! The blog's producer, `rabbit_producer.py`, as a library.
//!
//! ```python
//! channel.queue_declare(queue='rabbit')
//! channel.basic_publish(exchange='', routing_key='rabbit', body='Hello RabbitMQ!')
//! print("开始向 'rabbit' 队列中发布消息 'Hello RabbitMQ!'")
//! connection.close()
//! ```
//!
//! [`run`] does the same steps — connect, declare, publish through the
//! default exchange, close — with one difference that matters: it does not
//! report success until RabbitMQ has *confirmed* every message (publisher
//! confirms, `mandatory`). The blog's script prints its line even if the
//! broker lost the message a moment later.
//!
//! The binary (`src/main.rs`) only parses arguments and prints; tests drive
//! [`run`] directly.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use lapin::BasicProperties;
use shared::{AmqpError, AmqpSettings, ConfirmedPublisher, Outgoing, QueueSpec, connect_amqp};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tracing::info;

/// Messages in flight before we wait for the oldest confirm. Large enough to
/// keep the broker busy, small enough to bound what a reconnect republishes.
const MAX_IN_FLIGHT: usize = 2048;

/// From this many messages on, show a progress bar and a rate summary.
pub const PROGRESS_THRESHOLD: u64 = 1000;

/// What to publish.
#[derive(Debug)]
pub enum Messages {
    /// One message: the blog's `body='Hello RabbitMQ!'`.
    Single(String),
    /// `count` copies, numbered `text #1` … `text #count` (load and ordering tests).
    Numbered { text: String, count: u64 },
    /// Each line of standard input (`--message -`).
    Lines,
}

/// Everything [`run`] needs.
#[derive(Debug)]
pub struct ProducerConfig {
    pub amqp: AmqpSettings,
    pub queue: QueueSpec,
    pub messages: Messages,
}

/// What was published, for the summary line and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct PublishReport {
    pub published: u64,
    pub elapsed: Duration,
    /// True when a signal stopped us before everything was published.
    pub interrupted: bool,
}

impl PublishReport {
    pub fn rate(&self) -> f64 {
        self.published as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Connects, declares the queue, publishes, waits for every confirm, closes.
///
/// `stop` resolving (Ctrl-C) stops publishing new messages; those already sent
/// are still confirmed before we return.
pub async fn run(
    config: ProducerConfig,
    stop: impl Future<Output = ()>,
) -> Result<PublishReport, AmqpError> {
    // Shared with the publisher, which may open a fresh channel on it.
    let connection = Arc::new(connect_amqp(&config.amqp, "producer").await?);
    let mut publisher = ConfirmedPublisher::open(&connection, MAX_IN_FLIGHT).await?;
    shared::declare_queue(publisher.channel(), &config.queue).await?;

    let properties = message_properties(&config.queue);
    let queue = config.queue.name.as_str();
    let progress = progress_bar(&config.messages);
    let started = Instant::now();
    let mut published = 0u64;
    let mut interrupted = false;
    tokio::pin!(stop);

    let mut bodies = Bodies::new(config.messages);
    loop {
        let body = tokio::select! {
            biased;
            () = &mut stop => { interrupted = true; break; }
            body = bodies.next() => body,
        };
        let Some(body) = body? else { break };
        publisher
            .publish(Outgoing::to_queue(queue, body, properties.clone()))
            .await?;
        published += 1;
        progress.inc(1);
    }
    // Only now is "published" true: every message was confirmed by the broker.
    publisher.flush().await?;
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    connection
        .close(200, "bye".into())
        .await
        .map_err(AmqpError::broker("closing the connection"))?;
    info!(published, queue, "done");
    Ok(PublishReport {
        published,
        elapsed,
        interrupted,
    })
}

/// `--durable` means the message must survive a broker restart too:
/// delivery mode 2 ("persistent"). A durable queue of transient messages
/// comes back empty after a restart.
fn message_properties(queue: &QueueSpec) -> BasicProperties {
    let properties = BasicProperties::default().with_content_type("text/plain".into());
    if queue.durable {
        properties.with_delivery_mode(2)
    } else {
        properties
    }
}

fn progress_bar(messages: &Messages) -> ProgressBar {
    match messages {
        // indicatif draws on stderr only when it is a terminal.
        Messages::Numbered { count, .. } if *count >= PROGRESS_THRESHOLD => {
            let bar = ProgressBar::new(*count);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} messages, {per_sec}, eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        }
        _ => ProgressBar::hidden(),
    }
}

/// The message bodies, produced one at a time so `--count 1000000` and an
/// endless stdin never sit in memory at once.
struct Bodies {
    messages: Messages,
    sent: u64,
    stdin: tokio::io::BufReader<tokio::io::Stdin>,
}

impl Bodies {
    fn new(messages: Messages) -> Self {
        Self {
            messages,
            sent: 0,
            stdin: tokio::io::BufReader::new(tokio::io::stdin()),
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<u8>>, AmqpError> {
        let body = match &self.messages {
            Messages::Single(text) if self.sent == 0 => Some(text.clone().into_bytes()),
            Messages::Single(_) => None,
            Messages::Numbered { text, count } if self.sent < *count => {
                Some(format!("{text} #{}", self.sent + 1).into_bytes())
            }
            Messages::Numbered { .. } => None,
            Messages::Lines => read_line(&mut self.stdin).await?,
        };
        self.sent += u64::from(body.is_some());
        Ok(body)
    }
}

/// One line of input without its line ending, as bytes (any encoding goes).
async fn read_line(input: &mut (impl AsyncBufRead + Unpin)) -> Result<Option<Vec<u8>>, AmqpError> {
    let mut line = Vec::new();
    let read = input
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| AmqpError::Input(error.to_string()))?;
    if read == 0 {
        return Ok(None);
    }
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    Ok(Some(line))
}

//! Connecting to RabbitMQ and declaring queues, with errors a person can act on.
//!
//! This is the Rust side of the blog's
//!
//! ```python
//! credentials = pika.PlainCredentials('guest', 'guest')
//! connection = pika.BlockingConnection(pika.ConnectionParameters('localhost', 5672, '/', credentials))
//! channel = connection.channel()
//! channel.queue_declare(queue='rabbit')
//! ```
//!
//! plus what that snippet leaves out:
//!
//! * **A named connection**, so `rabbitmqctl list_connections` and the
//!   management UI tell you which process is which.
//! * **Automatic recovery** (lapin's): when the broker restarts or an operator
//!   closes the connection, lapin reconnects and replays the queues, bindings,
//!   QoS and consumers. Without it, the blog's consumer simply dies.
//! * **Failover**: the URL may be a cluster's `;`-separated list, as in
//!   Celery's `broker_url`; every reconnect then goes to the next node
//!   ([`crate::nodes`]).
//! * **A bounded first connect**: while the broker is still starting we retry
//!   for `--connect-timeout` seconds, then stop with an error that says how to
//!   start one, instead of hanging or spewing a backtrace.
//! * **Classified errors**: wrong password, missing permission, a queue that
//!   exists with other properties. Each becomes one line naming the cause and
//!   the fix.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use futures_lite::StreamExt;
use lapin::{
    Channel, Connection, ConnectionProperties, Event,
    options::QueueDeclareOptions,
    tcp::OwnedTLSConfig,
    types::{AMQPValue, FieldTable},
    uri::AMQPUri,
};
use tracing::{debug, error, info};

use async_rs::{Runtime, Tokio, util::RuntimeParts};

use crate::{
    fail_stop::FailStopReactor, nodes::AmqpNodes, redact::Redacted, settings::AmqpSettings,
    watch::ConnectionWatch,
};

// Defined in their own modules (no module here needs this one back), and
// named here too, where the programs have always found them.
pub use crate::{
    error::{AmqpError, amqp_error, is_connection_error},
    settings::QueueType,
    url::parse_amqp_url,
};

/// How lapin paces reconnection attempts after the connection is lost.
/// About 50 s of attempts in all: enough to ride out a broker restart, short
/// enough that a broker that is gone for good is reported, not waited on forever.
const RECOVERY_MIN_DELAY: Duration = Duration::from_millis(200);
const RECOVERY_MAX_DELAY: Duration = Duration::from_secs(3);
const RECOVERY_ATTEMPTS: usize = 20;
/// The longest first connect we wait for, whatever the settings say.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Extra time for the AMQP handshake once the port answers.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(10);

/// The largest frame we offer RabbitMQ (it picks the smaller of its own and
/// ours). lapin keeps a receive and a send buffer of 32 frames each per
/// connection, fully written, so RabbitMQ's default 128 KiB costs 8 MiB of
/// memory per connection; 32 KiB costs 2 MiB. Our messages are about 1 KiB,
/// and a bigger body is simply split into more frames. A `?frame_max=` in
/// the URL still wins.
const FRAME_MAX: u32 = 32 * 1024;

/// A queue as the blog declares it: a name, and whether it survives a broker
/// restart. `QueueSpec::new("rabbit")` is pika's `queue_declare(queue='rabbit')`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    /// Durable queue (and, on the producer side, persistent messages).
    pub durable: bool,
    /// Classic (the blog's) or quorum (`x-queue-type: quorum`).
    pub queue_type: QueueType,
}

impl QueueSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: false,
            queue_type: QueueType::Classic,
        }
    }

    /// Durable or not; a quorum queue is always durable, whatever is asked.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable || self.queue_type == QueueType::Quorum;
        self
    }

    /// A durable quorum queue, as RabbitMQ's tutorials declare theirs today:
    /// pika's `queue_declare(queue=…, durable=True, arguments={"x-queue-type": "quorum"})`.
    pub fn quorum(self) -> Self {
        self.queue_type(QueueType::Quorum)
    }

    /// The queue's type; a quorum queue is made durable too.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self.durable |= queue_type == QueueType::Quorum;
        self
    }
}

/// Opens a named, self-recovering connection to RabbitMQ.
///
/// `settings.url` may be one URL or a cluster's `;`-separated list, as in
/// Celery's `broker_url`: the connection then moves to the next node
/// whenever the one in use is lost or refuses (see [`crate::nodes`]).
/// `program` names the connection when `--connection-name` is not given.
pub async fn connect_amqp(settings: &AmqpSettings, program: &str) -> Result<Connection, AmqpError> {
    let shown_url = Redacted(&settings.url).to_string();
    let nodes = Arc::new(AmqpNodes::parse(&settings.url)?);
    let mut uri = nodes.first_uri().clone();
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    let name = settings.connection_name_or(program);

    let properties = ConnectionProperties::default()
        .with_connection_name(name.clone().into())
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(RECOVERY_MIN_DELAY)
                .with_max_delay(RECOVERY_MAX_DELAY)
                .with_max_times(RECOVERY_ATTEMPTS)
        });

    debug!(url = %shown_url, connection = %name, "connecting to RabbitMQ");
    // Capped, so that a library caller's `Duration::MAX` cannot overflow the
    // clock (the CLI's own range already stops at a day).
    let timeout = settings.connect_timeout.min(MAX_CONNECT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    if let Err(cause) = nodes.wait_for_one(deadline).await {
        return Err(AmqpError::Unreachable {
            url: shown_url,
            waited_secs: timeout.as_secs_f64(),
            cause,
            setting: settings.url_setting,
        });
    }
    // lapin's default runtime (tokio), except that the sockets it opens
    // stay failed once they fail: see `fail_stop` for the hang that avoids.
    let runtime = Runtime::new(RuntimeParts::new(
        Tokio::current(),
        FailStopReactor(Tokio::current()),
    ));
    let connect_next = {
        let nodes = nodes.clone();
        let tls = OwnedTLSConfig::default();
        async move |_first_uri, runtime| nodes.connect_next(&runtime, &tls).await
    };
    // The port answers, so the handshake itself is quick; the timeout only
    // guards against something that is not RabbitMQ sitting on the port.
    let handshake = deadline.saturating_duration_since(Instant::now()) + HANDSHAKE_GRACE;
    let connecting = Connection::connector(uri.clone(), runtime, connect_next, properties);
    match tokio::time::timeout(handshake, connecting).await {
        Ok(Ok(connection)) => {
            info!("Connected to {shown_url}");
            // Named, since one program may hold several connections.
            let watch = ConnectionWatch::new(format!("RabbitMQ at {shown_url} ('{name}')"));
            log_losses_and_recoveries(&connection, watch, nodes);
            Ok(connection)
        }
        Ok(Err(error)) => Err(classify_connect_error(error, &uri, shown_url, settings)),
        Err(_elapsed) => Err(AmqpError::Unreachable {
            url: shown_url,
            waited_secs: timeout.as_secs_f64(),
            cause: "the port answers, but no AMQP handshake completed".to_owned(),
            setting: settings.url_setting,
        }),
    }
}

/// How often the connection's state is looked at for a loss.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// A `Connected` event this soon after connecting is the first connect's
/// own (it may reach us just after `connect` returned), not a recovery.
const FIRST_CONNECT_EVENT: Duration = Duration::from_secs(1);

/// Reports the connection's losses and lapin's recoveries to `watch`.
///
/// lapin reconnects by itself, and from the outside a recovered connection
/// looks like one that never broke: without this, a broker restart would
/// pass without a line in the log. A loss that lapin recovers from raises no
/// event, only the recovery does (`Connected`), so the connection's state is
/// also looked at every [`WATCH_EVERY`] (a lock and a compare, no I/O); a
/// recovery quicker than that is reported, loss and recovery together, when
/// its event arrives. Channel-level refusals (a declare that does not match,
/// say) are the caller's errors to report, not outages.
fn log_losses_and_recoveries(
    connection: &Connection,
    watch: ConnectionWatch,
    nodes: Arc<AmqpNodes>,
) {
    let mut events = connection.events_listener();
    let status = connection.status().clone();
    let listening_since = Instant::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Error(error)) if !error.is_amqp_soft_error() => watch.lost(&error),
                    Some(Event::Connected) => {
                        if !watch.is_down() {
                            if listening_since.elapsed() < FIRST_CONNECT_EVENT {
                                continue;
                            }
                            watch.lost(&"the connection dropped; lapin reconnected");
                        }
                        watch.ok();
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    if status.reconnecting() && !watch.is_down() {
                        watch.lost(&"the connection dropped; lapin is reconnecting");
                    } else if status.closed() {
                        if watch.is_down() {
                            // lapin gave up: say what each node answered last.
                            error!(
                                "Gave up reconnecting to {} after {RECOVERY_ATTEMPTS} attempts: {}",
                                watch.what(),
                                nodes.failures()
                            );
                        }
                        return;
                    }
                }
            }
        }
    });
}

fn classify_connect_error(
    error: lapin::Error,
    uri: &AMQPUri,
    url: String,
    settings: &AmqpSettings,
) -> AmqpError {
    let setting = settings.url_setting;
    let user = uri.authority.userinfo.username.clone();
    let vhost = uri.vhost.clone();
    match amqp_error(&error).map(|e| (e.get_id(), e.get_message().to_string())) {
        Some((403, _)) => AmqpError::AccessRefused {
            url,
            user,
            vhost,
            setting,
        },
        Some((530, detail)) => AmqpError::VhostNotAllowed {
            url,
            user,
            vhost,
            detail,
        },
        _ if error.is_io_error() => AmqpError::Unreachable {
            url,
            waited_secs: settings.connect_timeout.as_secs_f64(),
            cause: error.to_string(),
            setting,
        },
        _ => AmqpError::Broker {
            action: "connecting",
            source: error,
        },
    }
}

/// Declares `queue` exactly as pika's `queue_declare` would.
///
/// Declaring is idempotent, so producer and consumer both do it and either can
/// start first. If the queue already exists with other properties, RabbitMQ
/// answers PRECONDITION_FAILED and closes the channel; we turn that into a
/// message saying what differs and how to fix it.
pub async fn declare_queue(channel: &Channel, queue: &QueueSpec) -> Result<(), AmqpError> {
    let options = QueueDeclareOptions {
        durable: queue.durable,
        ..QueueDeclareOptions::default()
    };
    let mut arguments = FieldTable::default();
    if queue.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    match channel
        .queue_declare(queue.name.as_str().into(), options, arguments)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => Err(amqp_error(&error)
            .and_then(|refusal| {
                classify_declare_refusal(queue, refusal.get_id(), refusal.get_message().as_str())
            })
            .unwrap_or(AmqpError::Broker {
                action: "declaring the queue",
                source: error,
            })),
    }
}

/// Turns the broker's refusal of a queue declare (reply code and text) into
/// an error that says what to do, or `None` when it is not one we know.
fn classify_declare_refusal(queue: &QueueSpec, code: u16, text: &str) -> Option<AmqpError> {
    match code {
        // PRECONDITION_FAILED: the queue exists with other properties.
        406 => Some(AmqpError::QueueMismatch {
            queue: queue.name.clone(),
            fix: mismatch_fix(queue, text),
            detail: text.to_owned(),
        }),
        // INTERNAL_ERROR, from RabbitMQ 4.3 on, for the blog's own
        // `queue_declare(queue='rabbit')`: not durable, not exclusive.
        541 if text.contains("transient_nonexcl_queues") => Some(AmqpError::TransientQueueDenied {
            queue: queue.name.clone(),
        }),
        _ => None,
    }
}

fn mismatch_fix(queue: &QueueSpec, detail: &str) -> String {
    let name = &queue.name;
    if detail.contains("x-queue-type") {
        let other = match queue.queue_type {
            QueueType::Classic => "quorum",
            QueueType::Quorum => "classic",
        };
        return format!(
            "it is a {other} queue: declare it as one with --queue-type {other}, pick another name with --queue, or delete the old queue first: rabbitmqctl delete_queue {name}"
        );
    }
    let flag = if queue.durable {
        "drop --durable to use the existing non-durable queue"
    } else {
        "add --durable to use the existing durable queue"
    };
    format!(
        "{flag}, pick another name with --queue, or delete the old queue first: rabbitmqctl delete_queue {name}"
    )
}

#[cfg(test)]
mod tests {
    use lapin::{ChannelState, ErrorKind};

    /// The broker the tests use: `AMQP_URL`, or the blog's.
    fn test_url() -> String {
        std::env::var("AMQP_URL").unwrap_or_else(|_| crate::settings::DEFAULT_AMQP_URL.to_owned())
    }

    use super::*;

    #[test]
    fn accepts_the_blog_url_and_amqps() {
        let uri = parse_amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.authority.userinfo.username, "guest");
        assert!(parse_amqp_url("amqps://u:p@broker.example:5671/%2f").is_ok());
    }

    #[test]
    fn rejects_malformed_urls_without_showing_the_password() {
        for url in [
            "http://guest:secret@127.0.0.1/",
            "amqp://guest:secret@127.0.0.1:notaport/%2f",
            "127.0.0.1:5672",
            "amqp://guest:secret@127.0.0.1:5672/%2f?frame_max=1",
            "amqp://guest:secret@127.0.0.1:5672/%2f?heartbeat=999999999",
        ] {
            let message = parse_amqp_url(url).unwrap_err().to_string();
            assert!(message.starts_with("invalid AMQP URL"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    /// Against the real broker: the frame size we offer is the one in use
    /// (it sizes lapin's buffers), and a `?frame_max=` in the URL wins.
    #[tokio::test]
    async fn offers_small_frames_unless_the_url_asks_for_others() {
        let url = test_url();
        for (query, expected) in [("", FRAME_MAX), ("?frame_max=65536", 65536)] {
            let settings = AmqpSettings::new(format!("{url}{query}"));
            let connection = connect_amqp(&settings, "shared frame_max test")
                .await
                .unwrap();
            assert_eq!(connection.configuration().frame_max(), expected, "{query}");
            let _ = connection.close(200, "bye".into()).await;
        }
    }

    /// The first node of a list is down: the connection goes to the next
    /// one (what a program started while a cluster node is away does).
    #[tokio::test]
    async fn a_list_connects_to_the_first_node_that_answers() {
        let url = test_url();
        let uri = parse_amqp_url(&url).unwrap();
        let vhost = if uri.vhost == "/" {
            "%2f"
        } else {
            uri.vhost.as_str()
        };
        let info = &uri.authority.userinfo;
        let dead = format!(
            "amqp://{}:{}@127.0.0.1:1/{vhost}",
            info.username, info.password
        );
        let settings = AmqpSettings::new(format!("{dead};{url}"));
        let connection = connect_amqp(&settings, "shared failover test")
            .await
            .unwrap();
        assert!(connection.status().connected());
        let _ = connection.close(200, "bye".into()).await;
    }

    /// No node answers: one line naming every node and its cause, no password.
    #[tokio::test]
    async fn a_list_with_no_node_up_names_every_node() {
        let mut settings = AmqpSettings::new(
            "amqp://guest:secret@127.0.0.1:1/%2f;amqp://guest:secret@127.0.0.1:2/%2f",
        );
        settings.connect_timeout = Duration::from_millis(300);
        let message = connect_amqp(&settings, "shared failover test")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("RabbitMQ is not reachable at"),
            "{message}"
        );
        assert!(message.contains("127.0.0.1:1: "), "{message}");
        assert!(message.contains("127.0.0.1:2: "), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_channel_being_recovered_is_a_connection_error() {
        let reconnecting = lapin::Error::from(ErrorKind::InvalidChannelState(
            ChannelState::Reconnecting,
            "basic.publish",
        ));
        assert!(is_connection_error(&reconnecting));
        let closed = lapin::Error::from(ErrorKind::InvalidChannelState(
            ChannelState::Closed,
            "basic.publish",
        ));
        assert!(!is_connection_error(&closed));
    }

    /// The reply RabbitMQ 4.3+ sends for the blog's non-durable,
    /// non-exclusive queue, word for word.
    #[test]
    fn a_denied_transient_queue_names_both_ways_out() {
        let text = "INTERNAL_ERROR - Feature transient_nonexcl_queues is deprecated. \
                    By default, this feature is not permitted anymore.";
        let error = classify_declare_refusal(&QueueSpec::new("rabbit"), 541, text).unwrap();
        let message = error.to_string();
        assert!(
            message.starts_with("RabbitMQ refused to declare queue 'rabbit'"),
            "{message}"
        );
        assert!(message.contains("--durable"), "{message}");
        assert!(
            message.contains("deprecated_features.permit.transient_nonexcl_queues = true"),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
        // Another internal error stays the broker's own.
        assert!(classify_declare_refusal(&QueueSpec::new("q"), 541, "INTERNAL_ERROR").is_none());
        assert!(matches!(
            classify_declare_refusal(
                &QueueSpec::new("q"),
                406,
                "PRECONDITION_FAILED - inequivalent arg 'durable'"
            ),
            Some(AmqpError::QueueMismatch { .. })
        ));
    }

    #[test]
    fn mismatch_advice_names_the_flag_to_change() {
        let durable = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'rabbit'";
        let fix = mismatch_fix(&QueueSpec::new("rabbit").durable(true), durable);
        assert!(fix.contains("drop --durable"), "{fix}");
        let fix = mismatch_fix(&QueueSpec::new("rabbit"), durable);
        assert!(fix.contains("add --durable"), "{fix}");
        // RabbitMQ 3.10's text when a classic declare meets a quorum queue.
        let queue_type = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'rabbit' \
                          in vhost '/': received none but current is the value 'quorum' of type 'longstr'";
        let fix = mismatch_fix(&QueueSpec::new("rabbit"), queue_type);
        assert!(fix.contains("--queue-type quorum"), "{fix}");
    }
}

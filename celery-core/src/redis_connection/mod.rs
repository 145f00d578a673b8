//! The one way this crate opens Redis: the broker, the result backend, beat's
//! lease and state, and the SMS task's "already sent" records all come here.
//!
//! Every connection is opened by the same rules:
//!
//! * the URL is checked first, and a bad one names the setting it came from
//!   (`--result-backend`, not "a Redis URL somewhere");
//! * the Redis is one address (`redis://`) or the master Redis Sentinel
//!   names (`sentinel://…` with `--sentinel-master`; see `locate.rs`);
//! * the first connect is bounded by `--connect-timeout`, and a Redis that
//!   stays away ends in one line that says how to start one;
//! * a Redis that answers but turns us away (wrong password, no such
//!   database) is told apart from one that is not there;
//! * afterwards the connection reconnects by itself, following the master
//!   through a Sentinel failover ([`ManagedConnection`]), and every user of
//!   the connection reports failures and successes to one
//!   [`ConnectionWatch`], so an outage is logged once, with its length.

mod locate;
mod managed;

use std::{sync::Arc, time::Duration};

use amqp_connect::{ConnectionWatch, Redacted};
use redis::{
    ErrorKind, ServerErrorKind,
    aio::{MultiplexedConnection, PubSub},
};
use thiserror::Error;

use locate::Locator;
pub use locate::is_sentinel_url;
use managed::CONNECT_ATTEMPT_TIMEOUT;
pub use managed::ManagedConnection;

/// How a Redis connection is opened, beyond its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// How long the first connect keeps retrying while Redis starts.
    pub connect_timeout: Duration,
    /// The master's name when the URL lists sentinels (kombu's `master_name`).
    pub sentinel_master: Option<String>,
}

impl RedisOptions {
    /// A plain `redis://` connection with this start-up bound.
    pub fn with_timeout(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            sentinel_master: None,
        }
    }
}

impl From<&amqp_connect::AmqpSettings> for RedisOptions {
    /// The connection settings every program passes around hold the
    /// Redis ones too.
    fn from(settings: &amqp_connect::AmqpSettings) -> Self {
        Self {
            connect_timeout: settings.connect_timeout,
            sentinel_master: settings.sentinel_master.clone(),
        }
    }
}

/// True for failures that end by themselves, as opposed to a Redis that
/// refused what we asked: the connection is gone or timed out, Redis is
/// still loading its data after a restart (`LOADING`) or says to try again,
/// or a Sentinel failover is under way (no master named yet, or the node
/// reached is no longer master: `READONLY`, `MASTERDOWN`). Every retry loop
/// over Redis decides with this.
pub fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
            ) | ErrorKind::MasterNameNotFoundBySentinel
        )
}

/// What a Redis URL is for, so errors and log lines can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// "the broker", "the result backend", … (for log lines).
    pub name: &'static str,
    /// The flag and variable that set the URL (for error messages).
    pub setting: &'static str,
}

impl Role {
    pub const BROKER: Role = Role {
        name: "the broker",
        setting: "--broker / CELERY_BROKER_URL",
    };
    /// The worker's second connection to its broker, for remote control and events.
    pub const MAILBOX: Role = Role {
        name: "the broker (remote control and events)",
        setting: "--broker / CELERY_BROKER_URL",
    };
    pub const RESULT_BACKEND: Role = Role {
        name: "the result backend",
        setting: "--result-backend / CELERY_RESULT_BACKEND",
    };
    pub const BEAT_LEASE: Role = Role {
        name: "beat's lease Redis",
        setting: "--lease-redis / CELERY_BEAT_LEASE_REDIS",
    };
}

/// Opening a Redis connection failed, phrased for the user.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RedisConnectError {
    #[error(
        "invalid Redis URL '{url}' in {setting}: {reason}; expected redis://[:PASSWORD@]HOST:PORT/DB, e.g. redis://127.0.0.1:6379/7, or sentinel://HOST:26379;sentinel://HOST:26380/DB with --sentinel-master NAME"
    )]
    InvalidUrl {
        url: String,
        setting: &'static str,
        reason: String,
    },
    #[error(
        "Redis is not reachable at {url} ({cause}); {hint}, or point {setting} at a running one"
    )]
    Unreachable {
        url: String,
        setting: &'static str,
        cause: String,
        /// How to start what is missing: one Redis, or a Sentinel set-up.
        hint: &'static str,
    },
    #[error(
        "Redis at {url} turned the connection down ({cause}); check the password and database number in {setting}"
    )]
    Refused {
        url: String,
        setting: &'static str,
        cause: String,
    },
}

const START_REDIS: &str =
    "start it with `docker compose up -d redis` or `redis-server --daemonize yes`";
const START_SENTINEL: &str = "check --sentinel-master against `redis-cli -p 26379 sentinel masters`, or start the set-up with `scripts/sentinel start`";

/// A self-reconnecting connection to one Redis (or to whichever node
/// Sentinel names master), with its watch. Cheap to clone: clones share the
/// connection.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    locator: Arc<Locator>,
    connection: ManagedConnection,
    url: String,
    watch: ConnectionWatch,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &Redacted(&self.inner.url))
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Checks `url` and connects, retrying while Redis starts (or while
    /// Sentinel names no master yet), for at most `options.connect_timeout`.
    pub async fn open(
        url: &str,
        role: Role,
        options: &RedisOptions,
    ) -> Result<Self, RedisConnectError> {
        let shown = Redacted(url).to_string();
        let locator =
            Locator::parse(url, options.sentinel_master.as_deref()).map_err(|reason| {
                RedisConnectError::InvalidUrl {
                    url: shown.clone(),
                    setting: role.setting,
                    reason,
                }
            })?;
        let locator = Arc::new(locator);
        let (shown, hint) = match locator.sentinel() {
            None => (shown, START_REDIS),
            Some(sentinel) => (format!("{shown} ({})", sentinel.describe()), START_SENTINEL),
        };
        // `waited`: set when we gave up on a Redis that kept failing.
        let failed = |error: redis::RedisError, waited: Option<Duration>| {
            let cause = match waited {
                Some(waited) => format!("gave up after {}s: {error}", waited.as_secs_f64()),
                None => error.to_string(),
            };
            let (url, setting) = (shown.clone(), role.setting);
            if is_connection_error(&error) {
                RedisConnectError::Unreachable {
                    url,
                    setting,
                    cause,
                    hint,
                }
            } else {
                RedisConnectError::Refused {
                    url,
                    setting,
                    cause,
                }
            }
        };
        // Keep asking, within the bound, while Redis is up but still loading
        // its data (`LOADING`), or, under Sentinel, while no master is named
        // or reachable yet (a fixed address is retried inside the manager
        // itself, with backoff). Remember the last failure: it is the reason
        // to report if time runs out.
        let mut last_failure = None;
        let connecting = async {
            loop {
                match ManagedConnection::connect(locator.clone()).await {
                    Err(error)
                        if is_loading(&error)
                            || (locator.sentinel().is_some() && is_connection_error(&error)) =>
                    {
                        last_failure = Some(error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => break other,
                }
            }
        };
        let connection = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(failed(error, None)),
            Err(_elapsed) => {
                // Ask once more, quickly, for the reason to report.
                let retry = match locator.master().await {
                    Ok(client) => {
                        let config = redis::AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(Duration::from_secs(2)));
                        client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await
                            .map(drop)
                    }
                    Err(error) => Err(error),
                };
                return Err(match retry.err().or(last_failure) {
                    Some(error) => failed(error, Some(options.connect_timeout)),
                    None => RedisConnectError::Unreachable {
                        url: shown.clone(),
                        setting: role.setting,
                        cause: format!(
                            "no answer within {}s",
                            options.connect_timeout.as_secs_f64()
                        ),
                        hint,
                    },
                });
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                watch: ConnectionWatch::new(format!("{} at {shown}", role.name)),
                locator,
                connection,
                url: url.to_owned(),
            }),
        })
    }

    /// The shared, self-reconnecting connection (clone it per use).
    pub fn manager(&self) -> ManagedConnection {
        self.inner.connection.clone()
    }

    /// Every user of this connection reports to this watch.
    pub fn watch(&self) -> &ConnectionWatch {
        &self.inner.watch
    }

    /// The database number the URL selects (kombu prefixes pub/sub
    /// channels with it, since channels are shared by all databases).
    pub fn db(&self) -> i64 {
        redis::aio::ConnectionLike::get_db(&self.inner.connection)
    }

    /// The URL with its password hidden.
    pub fn shown_url(&self) -> String {
        Redacted(&self.inner.url).to_string()
    }

    /// A second self-reconnecting connection to the same Redis, for a
    /// task that must not queue behind the shared one (the fetch thread,
    /// which runs on a runtime of its own).
    pub async fn new_manager(&self) -> redis::RedisResult<ManagedConnection> {
        ManagedConnection::connect(self.inner.locator.clone()).await
    }

    /// A connection of its own with no response timeout, for blocking
    /// commands (`BLMOVE … 1`): on a shared connection they would hold up
    /// every other command. Under Sentinel it goes to the master of the
    /// moment; a caller reconnects when it fails.
    pub async fn blocking_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_ATTEMPT_TIMEOUT))
            .set_response_timeout(None);
        self.inner
            .locator
            .master()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A pub/sub connection (for waiting on a result's channel), to the
    /// master of the moment.
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        self.inner.locator.master().await?.get_async_pubsub().await
    }
}

fn is_loading(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::BusyLoading)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the soak run: right after a restart, Redis answers `LOADING`
    /// while it reads its append-only file, and a producer that took that for
    /// a refusal gave up.
    #[test]
    fn a_redis_still_loading_is_a_passing_trouble() {
        let loading = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "Redis is loading the dataset in memory",
        ));
        assert!(is_connection_error(&loading));
        let refused = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(!is_connection_error(&refused));
    }

    #[tokio::test]
    async fn a_bad_url_names_its_setting_and_hides_the_password() {
        let error = RedisConnection::open(
            "redis://:s3cret@127.0.0.1:notaport/7",
            Role::RESULT_BACKEND,
            &RedisOptions::with_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("invalid Redis URL"), "{error}");
        assert!(error.contains("--result-backend"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_redis_is_unreachable_within_the_timeout() {
        let started = std::time::Instant::now();
        let error = RedisConnection::open(
            "redis://127.0.0.1:1/0",
            Role::BEAT_LEASE,
            &RedisOptions::with_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, RedisConnectError::Unreachable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("--lease-redis"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_refusal_not_an_outage() {
        // The test Redis has no password: AUTH with one is refused.
        let error = RedisConnection::open(
            "redis://:wrong-password@127.0.0.1:6379/0",
            Role::BROKER,
            &RedisOptions::with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, RedisConnectError::Refused { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("wrong-password"), "{error}");
    }
}

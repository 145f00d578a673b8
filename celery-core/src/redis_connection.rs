//! The one way this crate opens Redis: the broker, the result backend, beat's
//! lease and state, and the SMS task's "already sent" records all come here.
//!
//! Every connection is opened by the same rules:
//!
//! * the URL is checked first, and a bad one names the setting it came from
//!   (`--result-backend`, not "a Redis URL somewhere");
//! * the first connect is bounded by `--connect-timeout`, and a Redis that
//!   stays away ends in one line that says how to start one;
//! * a Redis that answers but turns us away (wrong password, no such
//!   database) is told apart from one that is not there;
//! * afterwards redis' `ConnectionManager` reconnects by itself, and every
//!   user of the connection reports failures and successes to one
//!   [`ConnectionWatch`], so an outage is logged once, with its length.

use std::{sync::Arc, time::Duration};

use redis::{
    Client, ErrorKind, ServerErrorKind,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub},
};
use shared::{ConnectionWatch, Redacted};
use thiserror::Error;

/// How long one TCP connect may take before it counts as failed.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may wait for its answer: long enough for a big
/// batch on a busy Redis, short enough that a hung Redis is noticed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// True for failures that end by themselves, as opposed to a Redis that
/// refused what we asked: the connection is gone or timed out, or Redis is
/// still loading its data after a restart (`LOADING`), or it says to try
/// again. Every retry loop over Redis decides with this.
pub fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain)
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
    pub const SENT_RECORDS: Role = Role {
        name: "the SMS sent-records Redis",
        setting: "--sent-records-url / SMS_SENT_RECORDS_URL",
    };
}

/// Opening a Redis connection failed, phrased for the user.
#[derive(Debug, Error)]
pub enum RedisConnectError {
    #[error(
        "invalid Redis URL '{url}' in {setting}: {reason}; expected redis://[:PASSWORD@]HOST:PORT/DB, e.g. redis://127.0.0.1:6379/7"
    )]
    InvalidUrl {
        url: String,
        setting: &'static str,
        reason: String,
    },
    #[error(
        "Redis is not reachable at {url} ({cause}); start it with `docker compose up -d redis` or `redis-server --daemonize yes`, or point {setting} at a running one"
    )]
    Unreachable {
        url: String,
        setting: &'static str,
        cause: String,
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

/// A self-reconnecting connection to one Redis, with its watch. Cheap to
/// clone: clones share the connection.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    manager: ConnectionManager,
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
    /// Checks `url` and connects, retrying while Redis starts, for at most
    /// `connect_timeout`.
    pub async fn open(
        url: &str,
        role: Role,
        connect_timeout: Duration,
    ) -> Result<Self, RedisConnectError> {
        let shown = Redacted(url).to_string();
        let client = Client::open(url).map_err(|error| RedisConnectError::InvalidUrl {
            url: shown.clone(),
            setting: role.setting,
            reason: error.to_string(),
        })?;
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
                }
            } else {
                RedisConnectError::Refused {
                    url,
                    setting,
                    cause,
                }
            }
        };
        // Redis may be up but still loading its data (`LOADING`): keep
        // asking, within the same bound, as for a Redis that is not up yet.
        let connecting = async {
            loop {
                match new_manager(&client).await {
                    Err(error) if is_loading(&error) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => break other,
                }
            }
        };
        let manager = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(error)) => return Err(failed(error, None)),
            Err(_elapsed) => {
                // Ask once more, quickly, for the reason to report.
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                let retry = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await;
                return Err(match retry {
                    Err(error) => failed(error, Some(connect_timeout)),
                    Ok(_) => RedisConnectError::Unreachable {
                        url: shown.clone(),
                        setting: role.setting,
                        cause: format!("no answer within {}s", connect_timeout.as_secs_f64()),
                    },
                });
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                watch: ConnectionWatch::new(format!("{} at {shown}", role.name)),
                client,
                manager,
                url: url.to_owned(),
            }),
        })
    }

    /// The shared, self-reconnecting connection (clone it per use).
    pub fn manager(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    /// Every user of this connection reports to this watch.
    pub fn watch(&self) -> &ConnectionWatch {
        &self.inner.watch
    }

    /// The database number the URL selects (kombu prefixes pub/sub
    /// channels with it, since channels are shared by all databases).
    pub fn db(&self) -> i64 {
        self.inner
            .client
            .get_connection_info()
            .redis_settings()
            .db()
    }

    /// The URL with its password hidden.
    pub fn shown_url(&self) -> String {
        Redacted(&self.inner.url).to_string()
    }

    /// A second self-reconnecting connection to the same Redis, for a
    /// task that must not queue behind the shared one (the fetch thread,
    /// which runs on a runtime of its own).
    pub async fn new_manager(&self) -> redis::RedisResult<ConnectionManager> {
        new_manager(&self.inner.client).await
    }

    /// A connection of its own with no response timeout, for blocking
    /// commands (`BLMOVE … 1`): on a shared connection they would hold up
    /// every other command.
    pub async fn blocking_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_ATTEMPT_TIMEOUT))
            .set_response_timeout(None);
        self.inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A pub/sub connection (for waiting on a result's channel).
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        self.inner.client.get_async_pubsub().await
    }
}

fn is_loading(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::BusyLoading)
    )
}

async fn new_manager(client: &Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_ATTEMPT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(8)
        .set_max_delay(Duration::from_secs(5));
    ConnectionManager::new_with_config(client.clone(), config).await
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
            Duration::from_secs(1),
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
            Duration::from_millis(500),
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
            Duration::from_secs(5),
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

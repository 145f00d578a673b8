//! The Redis result backend: where a task's outcome is stored and announced.
//!
//! Celery keeps each result under `celery-task-meta-<task id>` as JSON and, in
//! the same transaction, PUBLISHes the same JSON on a channel of the same
//! name (`celery-protocol.md` §B). Both halves matter: `AsyncResult.get()`
//! first GETs the key, then waits on the channel — a worker that only SETs
//! leaves a waiting client hanging until its timeout.
//!
//! One rule makes results safe under at-least-once delivery: a stored SUCCESS
//! is never overwritten. If a redelivered copy of a finished task fails (say
//! the gateway is down the second time), the client still sees the success.
//! We check and write in one Lua script, so two workers racing cannot both
//! pass the check.

use std::time::Duration;

use futures_lite::StreamExt;
use redis::{AsyncCommands, Script};
use thiserror::Error;

mod chord;
pub mod header;
mod meta;

pub use chord::{ChordProgress, HeaderPart, group_key};
pub use meta::{ExceptionInfo, ResultMeta, StoredResult, TaskState};

use crate::{
    protocol::json::to_python_json,
    redis_connection::{
        RedisConnectError, RedisConnection, RedisOptions, Role, is_connection_error,
    },
};
use amqp_connect::Redacted;

/// Celery's default `result_expires`: one day.
pub const RESULT_EXPIRES: Duration = Duration::from_secs(86_400);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error(
        "unsupported result backend '{0}': only redis://, rediss:// and sentinel:// are supported (e.g. redis://127.0.0.1:6379/8)"
    )]
    Unsupported(String),
    #[error(transparent)]
    Connect(#[from] RedisConnectError),
    #[error("cannot use the result backend at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error(
        "no result for task {task_id} after {waited:?}; is a worker running, with --result-backend set?"
    )]
    Timeout { task_id: String, waited: Duration },
    #[error(
        "the stored result of task {task_id} is not a Celery result ({reason}); something other than a worker wrote it"
    )]
    Corrupt { task_id: String, reason: String },
}

impl BackendError {
    /// True if the backend was away (it may be back in a moment), as opposed
    /// to refusing what we asked.
    pub fn is_connection_error(&self) -> bool {
        match self {
            BackendError::Redis { source, .. } => is_connection_error(source),
            BackendError::Connect(RedisConnectError::Unreachable { .. }) => true,
            _ => false,
        }
    }
}

/// The key and the pub/sub channel of a task's result.
pub fn result_key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

/// Writes `ARGV[1]` with a TTL unless a SUCCESS is already there, and
/// publishes it on the channel of the same name — atomically.
const STORE_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"#;

/// A connection to the result backend.
#[derive(Clone, Debug)]
pub struct ResultBackend {
    redis: RedisConnection,
    store_script: Script,
}

impl ResultBackend {
    /// Connects, retrying while Redis starts, for at most the connect timeout.
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self, BackendError> {
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !(url.contains("://") && matches!(scheme.as_str(), "redis" | "rediss" | "sentinel")) {
            return Err(BackendError::Unsupported(Redacted(url).to_string()));
        }
        Ok(Self {
            redis: RedisConnection::open(url, Role::RESULT_BACKEND, options).await?,
            store_script: Script::new(STORE_SCRIPT),
        })
    }

    /// The URL with its password hidden, for banners and logs.
    pub fn shown_url(&self) -> String {
        self.redis.shown_url()
    }

    /// Reports the outcome of a call to the connection's watch, and turns
    /// a failure into our error.
    fn checked<T>(&self, result: redis::RedisResult<T>) -> Result<T, BackendError> {
        match result {
            Ok(value) => {
                self.redis.watch().ok();
                Ok(value)
            }
            Err(source) => {
                if is_connection_error(&source) {
                    self.redis.watch().lost(&source);
                }
                Err(BackendError::Redis {
                    url: self.shown_url(),
                    source,
                })
            }
        }
    }

    /// Stores (and announces) a result. Returns false if a SUCCESS was kept.
    pub async fn store(&self, meta: &ResultMeta) -> Result<bool, BackendError> {
        let json = to_python_json(meta);
        let mut connection = self.redis.manager();
        let written: i64 = self.checked(
            self.store_script
                .key(result_key(&meta.task_id))
                .arg(json)
                .arg(RESULT_EXPIRES.as_secs())
                .invoke_async(&mut connection)
                .await,
        )?;
        Ok(written == 1)
    }

    /// The stored result, or `None` (PENDING) if there is none.
    pub async fn get(&self, task_id: &str) -> Result<Option<StoredResult>, BackendError> {
        let mut connection = self.redis.manager();
        let stored: Option<String> = self.checked(connection.get(result_key(task_id)).await)?;
        stored.map(|json| decode(task_id, &json)).transpose()
    }

    /// Subscribes to a task's result channel. Call before sending the task,
    /// as Celery does, so a fast worker's PUBLISH cannot be missed.
    pub async fn subscribe(&self, task_id: &str) -> Result<ResultWaiter, BackendError> {
        let mut pubsub = self.checked(self.redis.pubsub().await)?;
        self.checked(pubsub.subscribe(result_key(task_id)).await)?;
        Ok(ResultWaiter {
            backend: self.clone(),
            task_id: task_id.to_owned(),
            pubsub,
        })
    }
}

/// Waits for one task's final result (see [`ResultBackend::subscribe`]).
#[allow(missing_debug_implementations)] // holds a live subscription; nothing useful to print
pub struct ResultWaiter {
    backend: ResultBackend,
    task_id: String,
    pubsub: redis::aio::PubSub,
}

impl ResultWaiter {
    /// Returns the result once it is SUCCESS, FAILURE or REVOKED.
    pub async fn wait(mut self, timeout: Duration) -> Result<StoredResult, BackendError> {
        let task_id = self.task_id.clone();
        let waiting = async {
            // The result may have been stored before we subscribed.
            if let Some(stored) = self.backend.get(&task_id).await?
                && stored.status.is_ready()
            {
                return Ok(stored);
            }
            let mut messages = self.pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(json) = message.get_payload::<String>() else {
                    continue;
                };
                let stored = decode(&task_id, &json)?;
                if stored.status.is_ready() {
                    return Ok(stored);
                }
            }
            // The subscription ended (connection lost): fall back to a read.
            self.backend
                .get(&task_id)
                .await?
                .ok_or(BackendError::Timeout {
                    task_id: task_id.clone(),
                    waited: timeout,
                })
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .unwrap_or(Err(BackendError::Timeout {
                task_id,
                waited: timeout,
            }))
    }
}

/// Reads a stored result; text that is not one is an error, not PENDING.
fn decode(task_id: &str, json: &str) -> Result<StoredResult, BackendError> {
    serde_json::from_str(json).map_err(|error| BackendError::Corrupt {
        task_id: task_id.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stored_results_read_back_typed() {
        // Captured from Celery 5.7 (celery-protocol.md §B.2).
        let failure = r#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad phone"], "exc_module": "builtins"}, "traceback": "Traceback…", "children": [], "date_done": "2026-11-24T15:44:37.200072+00:00", "task_id": "bec1cdcf"}"#;
        let stored = decode("bec1cdcf", failure).unwrap();
        assert_eq!(stored.status, TaskState::Failure);
        assert!(stored.status.is_ready());
        let exception = stored.exception().unwrap();
        assert_eq!(exception.display(), "ValueError('bad phone')");
        let custom = decode(
            "x",
            r#"{"status": "PROGRESS", "result": {"done": 3}, "task_id": "x"}"#,
        )
        .unwrap();
        assert_eq!(custom.status, TaskState::Custom("PROGRESS".into()));
        assert_eq!(custom.result, json!({"done": 3}));
        assert!(!custom.status.is_ready());
    }

    #[test]
    fn corrupt_results_are_errors_not_pending() {
        for text in ["{not json", "[]", r#"{"result": 1}"#] {
            let error = decode("some-id", text).unwrap_err();
            assert!(
                matches!(&error, BackendError::Corrupt { task_id, .. } if task_id == "some-id"),
                "{text}: {error}"
            );
        }
    }
}

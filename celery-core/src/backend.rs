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
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::{
    protocol::json::to_python_json,
    redis_connection::{RedisConnectError, RedisConnection, Role, is_connection_error},
};
use shared::Redacted;

/// Celery's default `result_expires`: one day.
pub const RESULT_EXPIRES: Duration = Duration::from_secs(86_400);

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(
        "unsupported result backend '{0}': only redis:// and rediss:// are supported (e.g. redis://127.0.0.1:6379/8)"
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

/// A task state, as Celery names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    Pending,
    Started,
    Retry,
    Failure,
    Success,
    Revoked,
}

impl TaskState {
    /// SUCCESS, FAILURE and REVOKED are final: `get()` returns on them.
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }
}

/// An exception in Celery's result format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    /// `exc.args`, always a list.
    pub exc_message: Vec<Value>,
    pub exc_module: String,
}

impl ExceptionInfo {
    pub fn new(exc_type: &str, exc_module: &str, message: impl Into<String>) -> Self {
        Self {
            exc_type: exc_type.to_owned(),
            exc_message: vec![Value::String(message.into())],
            exc_module: exc_module.to_owned(),
        }
    }

    /// `ValueError('bad phone')`, as the worker log shows it.
    pub fn display(&self) -> String {
        let args: Vec<String> = self
            .exc_message
            .iter()
            .map(crate::protocol::pyrepr::repr)
            .collect();
        format!("{}({})", self.exc_type, args.join(", "))
    }
}

/// The stored JSON, key order as Celery writes it (§B.2).
#[derive(Debug, Clone, Serialize)]
pub struct ResultMeta {
    pub status: TaskState,
    pub result: Value,
    pub traceback: Option<String>,
    pub children: Vec<Value>,
    pub date_done: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub task_id: String,
}

impl ResultMeta {
    pub fn success(task_id: &str, result: Value) -> Self {
        Self::ready(task_id, TaskState::Success, result, None)
    }

    pub fn failure(task_id: &str, exception: &ExceptionInfo, traceback: Option<String>) -> Self {
        Self::ready(
            task_id,
            TaskState::Failure,
            exception_value(exception),
            traceback,
        )
    }

    pub fn revoked(task_id: &str) -> Self {
        let exception = ExceptionInfo::new("TaskRevokedError", "celery.exceptions", "expired");
        Self::ready(
            task_id,
            TaskState::Revoked,
            exception_value(&exception),
            None,
        )
    }

    /// RETRY is not final, so it has no `date_done`.
    pub fn retry(task_id: &str, exception: &ExceptionInfo, traceback: String) -> Self {
        ResultMeta {
            status: TaskState::Retry,
            result: exception_value(exception),
            traceback: Some(traceback),
            children: Vec::new(),
            date_done: None,
            parent_id: None,
            task_id: task_id.to_owned(),
        }
    }

    fn ready(task_id: &str, status: TaskState, result: Value, traceback: Option<String>) -> Self {
        ResultMeta {
            status,
            result,
            traceback,
            children: Vec::new(),
            date_done: Some(crate::protocol::time::format_celery_time(chrono::Utc::now())),
            parent_id: None,
            task_id: task_id.to_owned(),
        }
    }
}

fn exception_value(exception: &ExceptionInfo) -> Value {
    serde_json::to_value(exception).unwrap_or(Value::Null)
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
    /// Connects, retrying while Redis starts, for at most `connect_timeout`.
    pub async fn connect(url: &str, connect_timeout: Duration) -> Result<Self, BackendError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(BackendError::Unsupported(Redacted(url).to_string()));
        }
        Ok(Self {
            redis: RedisConnection::open(url, Role::RESULT_BACKEND, connect_timeout).await?,
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
    pub async fn get(&self, task_id: &str) -> Result<Option<Value>, BackendError> {
        let mut connection = self.redis.manager();
        let stored: Option<String> = self.checked(connection.get(result_key(task_id)).await)?;
        Ok(stored.and_then(|json| serde_json::from_str(&json).ok()))
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
    pub async fn wait(mut self, timeout: Duration) -> Result<Value, BackendError> {
        let task_id = self.task_id.clone();
        let waiting = async {
            // The result may have been stored before we subscribed.
            if let Some(meta) = self.backend.get(&task_id).await?
                && is_ready(&meta)
            {
                return Ok(meta);
            }
            let mut messages = self.pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(json) = message.get_payload::<String>() else {
                    continue;
                };
                if let Ok(meta) = serde_json::from_str::<Value>(&json)
                    && is_ready(&meta)
                {
                    return Ok(meta);
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

fn is_ready(meta: &Value) -> bool {
    matches!(
        meta.get("status").and_then(Value::as_str),
        Some("SUCCESS" | "FAILURE" | "REVOKED")
    )
}

//! What a result is: Celery's task states, its exception format, the JSON
//! a worker stores (`celery-protocol.md` §B), and that JSON read back.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A task state, as Celery names them. A state an application made up
/// (`self.update_state(state='PROGRESS')`) is kept as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Received,
    Started,
    Retry,
    Failure,
    Success,
    Revoked,
    Rejected,
    Ignored,
    Custom(String),
}

impl TaskState {
    /// SUCCESS, FAILURE and REVOKED are final: `get()` returns on them.
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    /// The state as Celery writes it.
    pub fn as_str(&self) -> &str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Retry => "RETRY",
            TaskState::Failure => "FAILURE",
            TaskState::Success => "SUCCESS",
            TaskState::Revoked => "REVOKED",
            TaskState::Rejected => "REJECTED",
            TaskState::Ignored => "IGNORED",
            TaskState::Custom(name) => name,
        }
    }

    /// The state called `name`: one of Celery's, or a custom one
    /// (`PROGRESS`).
    pub fn named(name: String) -> TaskState {
        match name.as_str() {
            "PENDING" => TaskState::Pending,
            "RECEIVED" => TaskState::Received,
            "STARTED" => TaskState::Started,
            "RETRY" => TaskState::Retry,
            "FAILURE" => TaskState::Failure,
            "SUCCESS" => TaskState::Success,
            "REVOKED" => TaskState::Revoked,
            "REJECTED" => TaskState::Rejected,
            "IGNORED" => TaskState::Ignored,
            _ => TaskState::Custom(name),
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(TaskState::named)
    }
}

/// A stored result, read back: what `AsyncResult` sees.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredResult {
    pub status: TaskState,
    /// The return value, or the exception (`exc_type`, `exc_message`,
    /// `exc_module`) of a FAILURE, REVOKED or RETRY.
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub traceback: Option<String>,
    #[serde(default)]
    pub children: Vec<Value>,
    #[serde(default)]
    pub date_done: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
    pub task_id: String,
}

impl StoredResult {
    /// The exception of a failed, revoked or retried task, if the result
    /// holds one in Celery's format.
    pub fn exception(&self) -> Option<ExceptionInfo> {
        serde_json::from_value(self.result.clone()).ok()
    }
}

/// An exception in Celery's result format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub task_id: String,
}

impl ResultMeta {
    /// Where the task stands in a canvas, as Celery records it: the group
    /// it belongs to and the task that sent it.
    pub fn in_canvas(mut self, group_id: Option<&str>, parent_id: Option<&str>) -> Self {
        self.group_id = group_id.map(str::to_owned);
        self.parent_id = parent_id.map(str::to_owned);
        self
    }

    /// The tasks it sent on (callbacks, the chain's next step), as Celery's
    /// `children`: each `AsyncResult.as_tuple()`, `[[id, null], null]`.
    pub fn with_children(mut self, ids: &[String]) -> Self {
        self.children = ids
            .iter()
            .map(|id| serde_json::json!([[id, null], null]))
            .collect();
        self
    }

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

    /// REVOKED, with Celery's reason: `expired` (past its `expires`) or
    /// `revoked` (by a `revoke` command).
    pub fn revoked(task_id: &str, reason: &str) -> Self {
        let exception = ExceptionInfo::new("TaskRevokedError", "celery.exceptions", reason);
        Self::ready(
            task_id,
            TaskState::Revoked,
            exception_value(&exception),
            None,
        )
    }

    /// Any state with `result` as its result (`update_state`): a final
    /// state gets its `date_done`, as in Celery's `_get_result_meta`.
    pub fn of_state(task_id: &str, status: TaskState, result: Value) -> Self {
        let mut meta = Self::ready(task_id, status, result, None);
        if !meta.status.is_ready() {
            meta.date_done = None;
        }
        meta
    }

    /// RETRY is not final, so it has no `date_done`.
    pub fn retry(task_id: &str, exception: &ExceptionInfo, traceback: String) -> Self {
        ResultMeta {
            status: TaskState::Retry,
            result: exception_value(exception),
            traceback: Some(traceback),
            children: Vec::new(),
            date_done: None,
            group_id: None,
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
            group_id: None,
            parent_id: None,
            task_id: task_id.to_owned(),
        }
    }
}

fn exception_value(exception: &ExceptionInfo) -> Value {
    serde_json::to_value(exception).unwrap_or(Value::Null)
}

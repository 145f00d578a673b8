//! A Celery task message (protocol 2), independent of the transport.
//!
//! Every task message has three parts (`celery-protocol.md` §0):
//!
//! * **headers** — what to run and how: `task` (the registered name, `SMS`),
//!   `id`, `eta`, `expires`, `retries`, `timelimit`, … in the order Python
//!   emits them;
//! * **properties** — AMQP-style envelope fields: `correlation_id` (= id),
//!   `reply_to`, `delivery_mode`, `priority`;
//! * **body** — the JSON array `[args, kwargs, embed]`.
//!
//! Redis and AMQP carry these three parts differently (see
//! [`super::redis_envelope`] and [`super::amqp_table`]); this module is the
//! part they share. Decoding is strict about types but lenient about absent
//! fields: a foreign producer may send only `task` and `id`, exactly as a
//! Python worker accepts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Number, Value, json};
use thiserror::Error;

use super::{
    json::to_python_json,
    pyrepr::{args_repr, kwargs_repr},
    time::{format_celery_time, parse_celery_time},
};

/// Task headers, field order as Python writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskHeaders {
    pub lang: String,
    pub task: String,
    pub id: String,
    pub shadow: Option<String>,
    pub eta: Option<String>,
    pub expires: Option<String>,
    pub group: Option<String>,
    pub group_index: Option<i64>,
    pub retries: i64,
    /// `[hard, soft]` seconds (hard first, whatever the protocol doc says).
    pub timelimit: [Option<Number>; 2],
    pub root_id: Option<String>,
    pub parent_id: Option<String>,
    pub argsrepr: Option<String>,
    pub kwargsrepr: Option<String>,
    pub origin: Option<String>,
    pub ignore_result: Option<bool>,
    pub replaced_task_nesting: i64,
    pub stamped_headers: Value,
    pub stamps: Value,
    /// Headers we do not interpret (`celery_beat_task`, `redelivered`, …),
    /// kept so a retry or a restore passes them on unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The envelope fields every transport carries.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProperties {
    pub correlation_id: String,
    pub reply_to: Option<String>,
    /// 2 = persistent.
    pub delivery_mode: u8,
    /// 0–9; on Redis it picks the priority sub-list.
    pub priority: u8,
}

/// One task message.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub headers: TaskHeaders,
    pub properties: TaskProperties,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// `{callbacks, errbacks, chain, chord}` — canvas links.
    pub embed: Embed,
}

/// The body's third element: canvas links (`link=`, chains, chords).
/// A struct rather than a JSON map so the keys keep Python's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Embed {
    #[serde(default)]
    pub callbacks: Value,
    #[serde(default)]
    pub errbacks: Value,
    #[serde(default)]
    pub chain: Value,
    #[serde(default)]
    pub chord: Value,
    /// Anything newer Celery versions add, passed on untouched.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// How a message could not be turned into a task, phrased for the log.
/// Each variant maps to the exception Python Celery would record.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "refusing to deserialize content of type {content_type}: only application/json is accepted"
    )]
    ContentDisallowed { content_type: String },
    #[error("message body is not valid JSON: {0}")]
    BadJson(String),
    #[error("message body must be the list [args, kwargs, embed]: {0}")]
    BadBody(String),
    #[error("header '{name}' {problem}")]
    BadHeader { name: &'static str, problem: String },
    #[error("malformed message envelope: {0}")]
    BadEnvelope(String),
}

impl DecodeError {
    /// `(exc_type, exc_module)` stored in the result backend for this error.
    pub fn exception(&self) -> (&'static str, &'static str) {
        match self {
            DecodeError::ContentDisallowed { .. } => ("ContentDisallowed", "kombu.exceptions"),
            DecodeError::BadJson(_) | DecodeError::BadEnvelope(_) => {
                ("DecodeError", "kombu.exceptions")
            }
            DecodeError::BadBody(_) | DecodeError::BadHeader { .. } => ("ValueError", "builtins"),
        }
    }
}

/// What a producer chooses when it sends a task: `apply_async`'s options.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    pub eta: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub priority: u8,
    pub time_limit: Option<f64>,
    pub soft_time_limit: Option<f64>,
    pub ignore_result: bool,
}

impl TaskMessage {
    /// A new task message, as `send_sms_code.apply_async(args, kwargs, **options)`
    /// would build it.
    pub fn new(
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: &SendOptions,
    ) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let limit = |seconds: Option<f64>| seconds.and_then(Number::from_f64);
        TaskMessage {
            headers: TaskHeaders {
                lang: "py".to_owned(),
                task: task.to_owned(),
                id: id.clone(),
                shadow: None,
                eta: options.eta.map(format_celery_time),
                expires: options.expires.map(format_celery_time),
                group: None,
                group_index: None,
                retries: 0,
                timelimit: [limit(options.time_limit), limit(options.soft_time_limit)],
                root_id: Some(id.clone()),
                parent_id: None,
                argsrepr: Some(args_repr(&args)),
                kwargsrepr: Some(kwargs_repr(&kwargs)),
                origin: Some(origin()),
                ignore_result: Some(options.ignore_result),
                replaced_task_nesting: 0,
                stamped_headers: Value::Null,
                stamps: json!({}),
                extra: Map::new(),
            },
            properties: TaskProperties {
                correlation_id: id,
                reply_to: Some(client_id().to_owned()),
                delivery_mode: 2,
                priority: options.priority,
            },
            args,
            kwargs,
            embed: Embed::default(),
        }
    }

    /// The message Celery publishes for `self.retry(countdown=…)`: the same
    /// id, `retries + 1`, a new `eta`, and the task itself as parent.
    pub fn retry(&self, eta: DateTime<Utc>) -> TaskMessage {
        let mut retry = self.clone();
        // A hostile `retries` of i64::MAX stays there rather than overflow.
        retry.headers.retries = self.headers.retries.saturating_add(1);
        retry.headers.eta = Some(format_celery_time(eta));
        retry.headers.parent_id = Some(self.headers.id.clone());
        retry.headers.extra.remove("redelivered");
        retry
    }

    /// The JSON body `[args, kwargs, embed]`, as kombu writes it.
    pub fn body_json(&self) -> String {
        to_python_json(&(&self.args, &self.kwargs, &self.embed))
    }

    /// The headers as a JSON object (for the Redis envelope and AMQP table).
    pub fn headers_value(&self) -> Value {
        serde_json::to_value(&self.headers).unwrap_or(Value::Null)
    }

    pub fn eta(&self) -> Option<DateTime<Utc>> {
        self.headers.eta.as_deref().and_then(parse_celery_time)
    }

    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.headers.expires.as_deref().and_then(parse_celery_time)
    }

    /// The hard time limit, if any. Zero or less means none, as in Celery;
    /// so does a limit too long for a timer to hold (`1e300` seconds),
    /// which could never be reached anyway.
    pub fn hard_time_limit(&self) -> Option<std::time::Duration> {
        self.headers.timelimit[0]
            .as_ref()
            .and_then(Number::as_f64)
            .filter(|seconds| *seconds > 0.0)
            .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
    }

    /// Decodes a message from its transport-neutral parts.
    ///
    /// `headers` is the header object (a JSON map, however the transport
    /// carried it). Checks run in the order a reader needs: first the two
    /// headers that identify the task (so every later error can name it),
    /// then the content type, then the body.
    pub fn decode(
        content_type: &str,
        headers: Map<String, Value>,
        properties: TaskProperties,
        body: &[u8],
    ) -> Result<TaskMessage, DecodeError> {
        let headers = TaskHeaders::from_map(headers)?;
        if !content_type.eq_ignore_ascii_case("application/json") {
            return Err(DecodeError::ContentDisallowed {
                content_type: content_type.to_owned(),
            });
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|error| DecodeError::BadJson(error.to_string()))?;
        let Value::Array(mut parts) = body else {
            return Err(DecodeError::BadBody(format!("got {}", kind_of(&body))));
        };
        if parts.len() != 3 {
            return Err(DecodeError::BadBody(format!(
                "expected 3 elements, got {}",
                parts.len()
            )));
        }
        let embed = parts.pop().unwrap_or(Value::Null);
        let kwargs = match parts.pop() {
            Some(Value::Object(kwargs)) => kwargs,
            Some(Value::Null) => Map::new(),
            other => {
                return Err(DecodeError::BadBody(format!(
                    "kwargs must be an object, got {}",
                    kind_of_opt(&other)
                )));
            }
        };
        let args = match parts.pop() {
            Some(Value::Array(args)) => args,
            Some(Value::Null) => Vec::new(),
            other => {
                return Err(DecodeError::BadBody(format!(
                    "args must be a list, got {}",
                    kind_of_opt(&other)
                )));
            }
        };
        let embed = match embed {
            Value::Null => Embed::default(),
            Value::Object(_) => serde_json::from_value(embed)
                .map_err(|error| DecodeError::BadBody(format!("embed: {error}")))?,
            other => {
                return Err(DecodeError::BadBody(format!(
                    "embed must be an object, got {}",
                    kind_of(&other)
                )));
            }
        };
        Ok(TaskMessage {
            headers,
            properties,
            args,
            kwargs,
            embed,
        })
    }
}

impl TaskHeaders {
    /// Reads headers, checking the type of each one Celery defines.
    pub fn from_map(mut map: Map<String, Value>) -> Result<TaskHeaders, DecodeError> {
        let task = required_string(&mut map, "task")?;
        let id = required_string(&mut map, "id")?;
        Ok(TaskHeaders {
            lang: optional_string(&mut map, "lang")?.unwrap_or_else(|| "py".to_owned()),
            shadow: optional_string(&mut map, "shadow")?,
            eta: optional_time(&mut map, "eta")?,
            expires: optional_time(&mut map, "expires")?,
            group: optional_string(&mut map, "group")?,
            group_index: optional_int(&mut map, "group_index")?,
            retries: optional_int(&mut map, "retries")?.unwrap_or(0),
            timelimit: time_limits(&mut map)?,
            root_id: optional_string(&mut map, "root_id")?,
            parent_id: optional_string(&mut map, "parent_id")?,
            argsrepr: optional_string(&mut map, "argsrepr")?,
            kwargsrepr: optional_string(&mut map, "kwargsrepr")?,
            origin: optional_string(&mut map, "origin")?,
            ignore_result: optional_bool(&mut map, "ignore_result")?,
            replaced_task_nesting: optional_int(&mut map, "replaced_task_nesting")?.unwrap_or(0),
            stamped_headers: map.remove("stamped_headers").unwrap_or(Value::Null),
            stamps: map.remove("stamps").unwrap_or_else(|| json!({})),
            task,
            id,
            extra: map,
        })
    }
}

/// The id of a message whose headers could not be decoded, for the log line.
pub fn task_id_of(headers: &Map<String, Value>) -> Option<&str> {
    headers.get("id").and_then(Value::as_str)
}

fn bad(name: &'static str, problem: impl Into<String>) -> DecodeError {
    DecodeError::BadHeader {
        name,
        problem: problem.into(),
    }
}

fn required_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<String, DecodeError> {
    optional_string(map, name)?.ok_or_else(|| bad(name, "is missing"))
}

fn optional_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(bad(
            name,
            format!("must be a string, got {}", kind_of(&other)),
        )),
    }
}

fn optional_time(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    let text = optional_string(map, name)?;
    match &text {
        Some(time) if parse_celery_time(time).is_none() => {
            Err(bad(name, format!("must be an ISO-8601 time, got {time:?}")))
        }
        _ => Ok(text),
    }
}

fn optional_int(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, DecodeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) if number.is_i64() => Ok(number.as_i64()),
        Some(other) => Err(bad(
            name,
            format!("must be an integer, got {}", kind_of(&other)),
        )),
    }
}

fn optional_bool(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<bool>, DecodeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(flag)),
        Some(other) => Err(bad(
            name,
            format!("must be true, false or null, got {}", kind_of(&other)),
        )),
    }
}

fn time_limits(map: &mut Map<String, Value>) -> Result<[Option<Number>; 2], DecodeError> {
    let limit = |value: &Value| match value {
        Value::Null => Ok(None),
        Value::Number(number) => Ok(Some(number.clone())),
        other => Err(bad(
            "timelimit",
            format!("must hold numbers or null, got {}", kind_of(other)),
        )),
    };
    match map.remove("timelimit") {
        None | Some(Value::Null) => Ok([None, None]),
        Some(Value::Array(pair)) if pair.len() == 2 => Ok([limit(&pair[0])?, limit(&pair[1])?]),
        Some(other) => Err(bad(
            "timelimit",
            format!("must be [hard, soft], got {}", other),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn kind_of_opt(value: &Option<Value>) -> &'static str {
    value.as_ref().map(kind_of).unwrap_or("nothing")
}

/// `gen<pid>@<host>`, what Python puts in `origin` for a plain client.
/// Computed once: `send --count` builds tens of thousands of messages.
fn origin() -> String {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| {
            format!(
                "gen{}@{}",
                std::process::id(),
                amqp_connect::settings::hostname()
            )
        })
        .clone()
}

/// One id per producer process, like the Celery app's `oid` in `reply_to`.
fn client_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

//! What a bound task (`@app.task(bind=True)`) knows about the call it runs:
//! Celery's `self.request`, read from the message's headers and properties
//! and from where the worker got it.

use serde_json::{Map, Value};

use super::in_task::WorkerLink;
use crate::protocol::TaskMessage;

/// Celery's `self.request`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Request {
    /// The task id (the result's key; the same for every retry).
    pub id: String,
    /// The registered name.
    pub name: String,
    /// The positional arguments, as sent.
    pub args: Vec<Value>,
    /// The keyword arguments, as sent.
    pub kwargs: Map<String, Value>,
    /// How many times it was retried before this run.
    pub retries: i64,
    /// The first task of the workflow this one belongs to.
    pub root_id: Option<String>,
    /// The task that sent this one.
    pub parent_id: Option<String>,
    /// The group this task is a member of.
    pub group: Option<String>,
    /// Its place in that group.
    pub group_index: Option<i64>,
    /// The chord body this task is a header of, as sent.
    pub chord: Option<Value>,
    /// The message's correlation id (the task id, in Celery).
    pub correlation_id: String,
    /// When it was due, as sent (ISO-8601).
    pub eta: Option<String>,
    /// When it expires, as sent (ISO-8601).
    pub expires: Option<String>,
    /// The node running it (`celery@host`).
    pub hostname: String,
    /// Where it came from.
    pub delivery_info: DeliveryInfo,
    /// Headers beyond Celery's own: what the sender added
    /// (`apply_async(headers={…})`).
    pub headers: Map<String, Value>,
    /// Where an `rpc://` result goes.
    pub reply_to: Option<String>,
    /// The node or process that sent it.
    pub origin: Option<String>,
    /// `(hard, soft)` time limits in seconds, as sent (Celery's order).
    pub timelimit: (Option<f64>, Option<f64>),
    /// `ignore_result`, as sent.
    pub ignore_result: bool,
    /// How many replacements deep this task is (`self.replace`).
    pub replaced_task_nesting: i64,
    /// The way back to the worker, for [`Request::send`] and
    /// [`Request::update_state`].
    pub(crate) worker: WorkerLink,
}

/// Celery's `self.request.delivery_info`.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// The exchange (`""`: the queue was consumed directly).
    pub exchange: String,
    /// The routing key: the queue's name.
    pub routing_key: String,
    pub priority: Option<u8>,
    /// Delivered before (to a worker that died, or handed back).
    pub redelivered: bool,
}

impl Request {
    /// A request for task `name` with id `id` and nothing else: for
    /// calling a task from Rust, and for tests.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Request {
        let id = id.into();
        Request {
            correlation_id: id.clone(),
            id,
            name: name.into(),
            args: Vec::new(),
            kwargs: Map::new(),
            retries: 0,
            root_id: None,
            parent_id: None,
            group: None,
            group_index: None,
            chord: None,
            eta: None,
            expires: None,
            hostname: String::new(),
            delivery_info: DeliveryInfo::default(),
            headers: Map::new(),
            reply_to: None,
            origin: None,
            timelimit: (None, None),
            ignore_result: false,
            replaced_task_nesting: 0,
            worker: WorkerLink::default(),
        }
    }

    /// With `retries` retries before this run.
    pub fn with_retries(mut self, retries: i64) -> Request {
        self.retries = retries;
        self
    }

    /// The request of `message`, received from `queue` by node `hostname`,
    /// run by `worker`.
    pub(crate) fn of(
        message: &TaskMessage,
        queue: &str,
        redelivered: bool,
        hostname: &str,
        worker: WorkerLink,
    ) -> Request {
        let headers = &message.headers;
        let limit = |limit: &Option<serde_json::Number>| limit.as_ref().and_then(|n| n.as_f64());
        let chord = match &message.embed.chord {
            Value::Null => None,
            chord => Some(chord.clone()),
        };
        Request {
            id: headers.id.clone(),
            name: headers.task.clone(),
            args: message.args.clone(),
            kwargs: message.kwargs.clone(),
            retries: headers.retries,
            root_id: headers.root_id.clone(),
            parent_id: headers.parent_id.clone(),
            group: headers.group.clone(),
            group_index: headers.group_index,
            chord,
            correlation_id: message.properties.correlation_id.clone(),
            eta: headers.eta.clone(),
            expires: headers.expires.clone(),
            hostname: hostname.to_owned(),
            delivery_info: DeliveryInfo {
                exchange: String::new(),
                routing_key: queue.to_owned(),
                priority: Some(message.properties.priority),
                redelivered,
            },
            headers: headers.extra.clone(),
            reply_to: message.properties.reply_to.clone(),
            origin: headers.origin.clone(),
            timelimit: (limit(&headers.timelimit[0]), limit(&headers.timelimit[1])),
            ignore_result: headers.ignore_result.unwrap_or(false),
            replaced_task_nesting: headers.replaced_task_nesting,
            worker,
        }
    }
}

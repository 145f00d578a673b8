//! The kombu envelope: how a task message sits in a Redis list.
//!
//! Redis has no message properties, so kombu wraps everything in one JSON
//! object and LPUSHes it onto the list named after the queue
//! (`celery-protocol.md` §A.1):
//!
//! ```text
//! {"body": "<base64 of the JSON body>", "content-encoding": "utf-8",
//!  "content-type": "application/json", "headers": {…task headers…},
//!  "properties": {"correlation_id": …, "reply_to": …, "delivery_mode": 2,
//!                 "delivery_info": {"exchange": "", "routing_key": "celery"},
//!                 "priority": 0, "body_encoding": "base64", "delivery_tag": "<uuid>"}}
//! ```
//!
//! The `delivery_tag` is made by the *producer* and is what the worker uses as
//! its key in the `unacked` hash, so it must be unique per message.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chrono::Utc;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    json::to_python_json,
    message::{DecodeError, TaskHeaders, TaskMessage, TaskProperties, task_id_of},
};

#[derive(Serialize)]
struct Envelope<'a> {
    body: String,
    #[serde(rename = "content-encoding")]
    content_encoding: &'static str,
    #[serde(rename = "content-type")]
    content_type: &'static str,
    headers: &'a TaskHeaders,
    properties: EnvelopeProperties<'a>,
}

#[derive(Serialize)]
struct EnvelopeProperties<'a> {
    correlation_id: &'a str,
    reply_to: &'a Option<String>,
    delivery_mode: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    delivery_info: DeliveryInfo<'a>,
    priority: u8,
    body_encoding: &'static str,
    delivery_tag: &'a str,
}

#[derive(Serialize)]
struct DeliveryInfo<'a> {
    exchange: &'a str,
    routing_key: &'a str,
}

/// The envelope text for `message` on `queue`, with a fresh delivery tag.
pub fn encode(message: &TaskMessage, queue: &str) -> String {
    let delivery_tag = uuid::Uuid::new_v4().to_string();
    // kombu sets `expiration` (milliseconds, as a string) only with `expires`.
    let expiration = message
        .expires()
        .map(|expires| (expires - Utc::now()).num_milliseconds().max(0).to_string());
    to_python_json(&Envelope {
        body: BASE64.encode(message.body_json()),
        content_encoding: "utf-8",
        content_type: "application/json",
        headers: &message.headers,
        properties: EnvelopeProperties {
            correlation_id: &message.properties.correlation_id,
            reply_to: &message.properties.reply_to,
            delivery_mode: message.properties.delivery_mode,
            expiration,
            delivery_info: DeliveryInfo {
                exchange: "",
                routing_key: queue,
            },
            priority: message.properties.priority,
            body_encoding: "base64",
            delivery_tag: &delivery_tag,
        },
    })
}

/// The envelope of a message that is not a task — a remote-control
/// request or reply, an event — as kombu writes any message: a JSON `body`,
/// its `headers`, sent through `exchange` with `routing_key`.
/// `delivery_mode` 1 is kombu's `transient`, what pidbox and events use.
pub fn encode_other(
    body: &[u8],
    headers: &Map<String, Value>,
    exchange: &str,
    routing_key: &str,
) -> String {
    #[derive(Serialize)]
    struct OtherEnvelope<'a> {
        body: String,
        #[serde(rename = "content-encoding")]
        content_encoding: &'static str,
        #[serde(rename = "content-type")]
        content_type: &'static str,
        headers: &'a Map<String, Value>,
        properties: OtherProperties<'a>,
    }
    #[derive(Serialize)]
    struct OtherProperties<'a> {
        delivery_mode: u8,
        delivery_info: DeliveryInfo<'a>,
        priority: u8,
        body_encoding: &'static str,
        delivery_tag: String,
    }
    to_python_json(&OtherEnvelope {
        body: BASE64.encode(body),
        content_encoding: "utf-8",
        content_type: "application/json",
        headers,
        properties: OtherProperties {
            delivery_mode: 1,
            delivery_info: DeliveryInfo {
                exchange,
                routing_key,
            },
            priority: 0,
            body_encoding: "base64",
            delivery_tag: uuid::Uuid::new_v4().to_string(),
        },
    })
}

/// Reads the envelope of a message that is not a task: its headers and its
/// JSON body. `None` for anything else: a mailbox is open to anybody.
pub fn decode_other(raw: &[u8]) -> Option<(Map<String, Value>, Value)> {
    let envelope: RawEnvelope<'_> = serde_json::from_slice(raw).ok()?;
    let headers = match envelope.headers {
        Some(Value::Object(headers)) => headers,
        _ => Map::new(),
    };
    let text = envelope.body.as_deref().unwrap_or_default();
    let base64 = envelope
        .properties
        .as_ref()
        .and_then(|properties| properties.body_encoding.as_ref())
        .and_then(Value::as_str)
        == Some("base64");
    let body = if base64 {
        serde_json::from_slice(&BASE64.decode(text).ok()?).ok()?
    } else {
        serde_json::from_str(text).ok()?
    };
    Some((headers, body))
}

/// What we could read of an envelope, even when the task inside is bad:
/// the id and name are what the log line and the FAILURE result need.
#[derive(Debug)]
pub struct Received {
    pub task_id: Option<String>,
    pub task_name: Option<String>,
    pub message: Result<TaskMessage, DecodeError>,
}

/// The parts of an envelope we read. Typed and borrowing: the worker decodes
/// one of these per task, and parsing the ~1 KB envelope into a generic JSON
/// tree was the single largest cost in the profile.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "content-type", borrow, default)]
    content_type: Option<Cow<'a, str>>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    properties: Option<RawProperties>,
}

#[derive(Deserialize, Default)]
struct RawProperties {
    #[serde(default)]
    correlation_id: Option<Value>,
    #[serde(default)]
    reply_to: Option<Value>,
    #[serde(default)]
    delivery_mode: Option<Value>,
    #[serde(default)]
    priority: Option<Value>,
    #[serde(default)]
    body_encoding: Option<Value>,
}

/// Decodes an envelope popped from a Redis list.
pub fn decode(raw: &[u8]) -> Received {
    let envelope: RawEnvelope<'_> = match serde_json::from_slice(raw) {
        Ok(envelope) => envelope,
        Err(error) => return unreadable(DecodeError::BadEnvelope(error.to_string())),
    };
    let headers = match envelope.headers {
        Some(Value::Object(headers)) => headers,
        _ => {
            return unreadable(DecodeError::BadEnvelope(
                "'headers' must be an object".into(),
            ));
        }
    };
    let task_id = task_id_of(&headers).map(str::to_owned);
    let task_name = headers
        .get("task")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let properties = envelope.properties.unwrap_or_default();
    let message = decode_task(
        envelope.body.as_deref().unwrap_or_default(),
        envelope.content_type.as_deref(),
        properties,
        headers,
    );
    Received {
        task_id,
        task_name,
        message,
    }
}

fn decode_task(
    body_text: &str,
    content_type: Option<&str>,
    properties: RawProperties,
    headers: Map<String, Value>,
) -> Result<TaskMessage, DecodeError> {
    // Base64 is optional: a foreign producer may put the JSON text itself.
    let body = if properties.body_encoding.as_ref().and_then(Value::as_str) == Some("base64") {
        BASE64.decode(body_text).map_err(|error| {
            DecodeError::BadEnvelope(format!("body is not valid base64: {error}"))
        })?
    } else {
        body_text.as_bytes().to_vec()
    };
    let id = headers
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let text = |value: Option<Value>| match value {
        Some(Value::String(text)) => Some(text),
        _ => None,
    };
    let properties = TaskProperties {
        correlation_id: text(properties.correlation_id).unwrap_or(id),
        reply_to: text(properties.reply_to),
        delivery_mode: properties
            .delivery_mode
            .as_ref()
            .and_then(Value::as_u64)
            .map_or(2, |mode| mode.min(2) as u8),
        priority: properties
            .priority
            .as_ref()
            .and_then(Value::as_u64)
            .map_or(0, |priority| priority.min(255) as u8),
    };
    let content_type = match content_type {
        None | Some("") => "application/json",
        Some(given) => given,
    };
    TaskMessage::decode(content_type, headers, properties, &body)
}

fn unreadable(error: DecodeError) -> Received {
    Received {
        task_id: None,
        task_name: None,
        message: Err(error),
    }
}

/// The Redis list for `queue` at `priority`: kombu keeps priorities 0–9 in
/// four lists — the queue itself for 0–2, then `queue\x06\x163`, `…6`, `…9`,
/// each priority going to the largest step not above it.
pub fn priority_list(queue: &str, priority: u8) -> String {
    match priority {
        0..=2 => queue.to_owned(),
        3..=5 => format!("{queue}\x06\x163"),
        6..=8 => format!("{queue}\x06\x166"),
        _ => format!("{queue}\x06\x169"),
    }
}

/// The lists a consumer of `queue` reads, in the order kombu serves them
/// (on Redis priority 0 is served first).
pub fn queue_lists(queue: &str) -> [String; 4] {
    [0, 3, 6, 9].map(|priority| priority_list(queue, priority))
}

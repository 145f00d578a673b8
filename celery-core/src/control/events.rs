//! Celery's events, as monitors read them (`celery events`, Flower): what
//! each one carries, built without I/O.
//!
//! Every event is a flat JSON object with `hostname`, `utcoffset`, `pid`,
//! `clock`, `timestamp` and `type` (`dispatcher._prepare_event`), plus the
//! fields of its kind (`../shared/celery-canvas-control-events.md` §3):
//!
//! * worker events — `worker-online`, `worker-heartbeat` (every 2 s),
//!   `worker-offline` — say the worker is alive and how busy it is; a
//!   monitor marks it offline when heartbeats stop for `freq × 2` seconds;
//! * task events — `task-received`, `-started`, `-succeeded`, `-failed`,
//!   `-retried`, `-revoked`, `-rejected` — follow one task, by `uuid`. Their
//!   arguments, results and exceptions are Python `repr` strings, as Celery
//!   sends them: monitors only display them.
//!
//! They travel on the `celeryev` exchange with the type as routing key,
//! `-` turned into `.` ([`routing_key`]); see `dispatch.rs`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    backend::ExceptionInfo,
    protocol::{
        TaskMessage,
        pyrepr::{args_repr, kwargs_repr, repr},
    },
};

/// Seconds between heartbeats (Celery's `worker_heartbeat` default `freq`).
pub const HEARTBEAT_SECONDS: f64 = 2.0;

/// Who sends the events: the same on every one of them.
#[derive(Debug, Clone)]
pub struct Sender {
    pub hostname: String,
    pub pid: u32,
    /// Hours *west* of UTC, Celery's sign (`time.timezone / 3600`).
    pub utcoffset: f64,
}

impl Sender {
    pub fn this_process(hostname: &str) -> Sender {
        let east_seconds = chrono::Local::now().offset().local_minus_utc();
        Sender {
            hostname: hostname.to_owned(),
            pid: std::process::id(),
            utcoffset: -f64::from(east_seconds) / 3600.0,
        }
    }

    /// An event of `kind` with `fields`, stamped `clock` and `timestamp`.
    pub fn event(
        &self,
        kind: &str,
        clock: u64,
        timestamp: f64,
        fields: Map<String, Value>,
    ) -> Value {
        let mut event = fields;
        event.insert("hostname".into(), self.hostname.clone().into());
        event.insert("utcoffset".into(), self.utcoffset.into());
        event.insert("pid".into(), self.pid.into());
        event.insert("clock".into(), clock.into());
        event.insert("timestamp".into(), timestamp.into());
        event.insert("type".into(), kind.into());
        Value::Object(event)
    }
}

/// The routing key of an event type: `worker-heartbeat` → `worker.heartbeat`.
pub fn routing_key(kind: &str) -> String {
    kind.replace('-', ".")
}

/// What a worker event says about the worker's load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub active: usize,
    pub processed: u64,
    pub loadavg: [f64; 3],
}

/// The fields of `worker-online`, `worker-heartbeat` and `worker-offline`.
pub fn worker_fields(load: Load, freq: f64) -> Map<String, Value> {
    let Value::Object(fields) = json!({
        "freq": freq,
        "active": load.active,
        "processed": load.processed,
        "loadavg": load.loadavg,
        "sw_ident": "celery-core (Rust)",
        "sw_ver": env!("CARGO_PKG_VERSION"),
        "sw_sys": python_system_name(),
    }) else {
        return Map::new();
    };
    fields
}

/// Python's `platform.system()`: `Linux`, `Darwin`, `Windows`.
fn python_system_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "windows" => "Windows",
        other => other,
    }
}

/// One step of a task's life, as a task event.
#[derive(Debug)]
pub enum TaskEvent<'a> {
    Received(&'a TaskMessage),
    Started,
    Succeeded {
        result: &'a Value,
        runtime: f64,
    },
    Failed {
        exception: &'a ExceptionInfo,
        traceback: &'a str,
    },
    Retried {
        exception: &'a ExceptionInfo,
        traceback: &'a str,
    },
    Revoked {
        terminated: bool,
        expired: bool,
    },
    Rejected {
        requeue: bool,
    },
}

/// The fields every event carries, serialized beside its own.
#[derive(Serialize)]
struct Common<'a> {
    hostname: &'a str,
    utcoffset: f64,
    pid: u32,
    clock: u64,
    timestamp: f64,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// A task event's own fields, by kind: written straight to JSON text. With
/// `-E` a busy worker sends three events per task, and building each as a
/// map of owned keys first cost a tenth of the drain rate (`bench/events.sh`).
#[derive(Serialize)]
#[serde(untagged)]
enum Fields<'a> {
    Received {
        uuid: &'a str,
        name: &'a str,
        args: Cow<'a, str>,
        kwargs: Cow<'a, str>,
        root_id: Option<&'a str>,
        parent_id: Option<&'a str>,
        retries: i64,
        eta: Option<&'a str>,
        expires: Option<&'a str>,
    },
    Uuid {
        uuid: &'a str,
    },
    Succeeded {
        uuid: &'a str,
        result: String,
        runtime: f64,
    },
    Failed {
        uuid: &'a str,
        exception: String,
        traceback: &'a str,
    },
    Revoked {
        uuid: &'a str,
        terminated: bool,
        signum: Option<u8>,
        expired: bool,
    },
    Rejected {
        uuid: &'a str,
        requeue: bool,
    },
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(flatten)]
    fields: Fields<'a>,
    #[serde(flatten)]
    common: Common<'a>,
}

impl TaskEvent<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskEvent::Received(_) => "task-received",
            TaskEvent::Started => "task-started",
            TaskEvent::Succeeded { .. } => "task-succeeded",
            TaskEvent::Failed { .. } => "task-failed",
            TaskEvent::Retried { .. } => "task-retried",
            TaskEvent::Revoked { .. } => "task-revoked",
            TaskEvent::Rejected { .. } => "task-rejected",
        }
    }

    /// The whole event about task `uuid`, as JSON text.
    pub fn to_json(&self, uuid: &str, sender: &Sender, clock: u64, timestamp: f64) -> String {
        let fields = match self {
            TaskEvent::Received(message) => {
                let headers = &message.headers;
                // A Python producer sends its own reprs; use them as Celery does.
                Fields::Received {
                    uuid,
                    name: &headers.task,
                    args: headers
                        .argsrepr
                        .as_deref()
                        .map_or_else(|| Cow::Owned(args_repr(&message.args)), Cow::Borrowed),
                    kwargs: headers
                        .kwargsrepr
                        .as_deref()
                        .map_or_else(|| Cow::Owned(kwargs_repr(&message.kwargs)), Cow::Borrowed),
                    root_id: headers.root_id.as_deref(),
                    parent_id: headers.parent_id.as_deref(),
                    retries: headers.retries,
                    eta: headers.eta.as_deref(),
                    expires: headers.expires.as_deref(),
                }
            }
            TaskEvent::Started => Fields::Uuid { uuid },
            TaskEvent::Succeeded { result, runtime } => Fields::Succeeded {
                uuid,
                result: repr(result),
                runtime: *runtime,
            },
            TaskEvent::Failed {
                exception,
                traceback,
            }
            | TaskEvent::Retried {
                exception,
                traceback,
            } => Fields::Failed {
                uuid,
                exception: exception.display(),
                traceback,
            },
            TaskEvent::Revoked {
                terminated,
                expired,
            } => Fields::Revoked {
                uuid,
                terminated: *terminated,
                // The signal a terminate sends in Celery: SIGTERM (15).
                signum: terminated.then_some(15),
                expired: *expired,
            },
            TaskEvent::Rejected { requeue } => Fields::Rejected {
                uuid,
                requeue: *requeue,
            },
        };
        let event = Event {
            fields,
            common: Common {
                hostname: &sender.hostname,
                utcoffset: sender.utcoffset,
                pid: sender.pid,
                clock,
                timestamp,
                kind: self.kind(),
            },
        };
        serde_json::to_string(&event).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SendOptions;

    fn sender() -> Sender {
        Sender {
            hostname: "w1@host".into(),
            pid: 17882,
            utcoffset: -0.0,
        }
    }

    /// The heartbeat captured from Celery 5.7 (§3.3), field for field but
    /// for the software we are.
    #[test]
    fn a_heartbeat_has_celerys_fields() {
        let load = Load {
            active: 0,
            processed: 0,
            loadavg: [2.3, 1.56, 0.72],
        };
        let event = sender().event(
            "worker-heartbeat",
            10,
            1_796_149_747.52,
            worker_fields(load, 2.0),
        );
        let captured = json!({"hostname":"w1@host","utcoffset":0.0,"pid":17882,"clock":10,"freq":2.0,
            "active":0,"processed":0,"loadavg":[2.3,1.56,0.72],"sw_ident":"py-celery","sw_ver":"5.7.0",
            "sw_sys":"Linux","timestamp":1_796_149_747.52,"type":"worker-heartbeat"});
        let (Value::Object(ours), Value::Object(theirs)) = (&event, &captured) else {
            panic!("not objects") // ok-panic: test assertion
        };
        let mut ours_keys: Vec<_> = ours.keys().collect();
        let mut their_keys: Vec<_> = theirs.keys().collect();
        ours_keys.sort();
        their_keys.sort();
        assert_eq!(ours_keys, their_keys);
        for key in [
            "hostname",
            "utcoffset",
            "pid",
            "clock",
            "freq",
            "loadavg",
            "timestamp",
            "type",
        ] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        assert_eq!(routing_key("worker-heartbeat"), "worker.heartbeat");
    }

    #[test]
    fn task_events_carry_reprs_as_celery_formats_them() {
        let message = TaskMessage::new(
            "SMS",
            vec!["13800000000".into(), "123456".into()],
            Map::new(),
            &SendOptions::default(),
        );
        let event = |task_event: TaskEvent<'_>| -> Value {
            serde_json::from_str(&task_event.to_json("id-1", &sender(), 7, 1.5)).unwrap()
        };
        let received = event(TaskEvent::Received(&message));
        assert_eq!(
            (received["type"].clone(), received["clock"].clone()),
            (json!("task-received"), json!(7))
        );
        assert_eq!(received["hostname"], "w1@host");
        assert_eq!(received["args"], "('13800000000', '123456')");
        assert_eq!(received["kwargs"], "{}");
        assert_eq!(received["name"], "SMS");
        assert_eq!(received["retries"], 0);

        let result = json!({"sent": [true, null]});
        let succeeded = event(TaskEvent::Succeeded {
            result: &result,
            runtime: 0.25,
        });
        assert_eq!(succeeded["result"], "{'sent': [True, None]}");
        assert_eq!(succeeded["runtime"], 0.25);

        let exception = ExceptionInfo::new("ValueError", "builtins", "bad phone");
        let failed = event(TaskEvent::Failed {
            exception: &exception,
            traceback: "tb",
        });
        assert_eq!(failed["exception"], "ValueError('bad phone')");
        assert_eq!(failed["uuid"], "id-1");

        let revoked = event(TaskEvent::Revoked {
            terminated: true,
            expired: false,
        });
        assert_eq!(
            (revoked["terminated"].clone(), revoked["signum"].clone()),
            (json!(true), json!(15))
        );
    }
}

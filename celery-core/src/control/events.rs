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

    /// The event's own fields, `uuid` first.
    pub fn fields(&self, uuid: &str) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("uuid".into(), uuid.into());
        match self {
            TaskEvent::Received(message) => {
                let headers = &message.headers;
                // A Python producer sends its own reprs; use them as Celery does.
                let args = headers
                    .argsrepr
                    .clone()
                    .unwrap_or_else(|| args_repr(&message.args));
                let kwargs = headers
                    .kwargsrepr
                    .clone()
                    .unwrap_or_else(|| kwargs_repr(&message.kwargs));
                fields.insert("name".into(), headers.task.clone().into());
                fields.insert("args".into(), args.into());
                fields.insert("kwargs".into(), kwargs.into());
                fields.insert("root_id".into(), headers.root_id.clone().into());
                fields.insert("parent_id".into(), headers.parent_id.clone().into());
                fields.insert("retries".into(), headers.retries.into());
                fields.insert("eta".into(), headers.eta.clone().into());
                fields.insert("expires".into(), headers.expires.clone().into());
            }
            TaskEvent::Started => {}
            TaskEvent::Succeeded { result, runtime } => {
                fields.insert("result".into(), repr(result).into());
                fields.insert("runtime".into(), (*runtime).into());
            }
            TaskEvent::Failed {
                exception,
                traceback,
            }
            | TaskEvent::Retried {
                exception,
                traceback,
            } => {
                fields.insert("exception".into(), exception.display().into());
                fields.insert("traceback".into(), (*traceback).into());
            }
            TaskEvent::Revoked {
                terminated,
                expired,
            } => {
                fields.insert("terminated".into(), (*terminated).into());
                // The signal a terminate sends in Celery: SIGTERM (15).
                let signum = if *terminated { json!(15) } else { Value::Null };
                fields.insert("signum".into(), signum);
                fields.insert("expired".into(), (*expired).into());
            }
            TaskEvent::Rejected { requeue } => {
                fields.insert("requeue".into(), (*requeue).into());
            }
        }
        fields
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
        let received = TaskEvent::Received(&message).fields("id-1");
        assert_eq!(received["args"], "('13800000000', '123456')");
        assert_eq!(received["kwargs"], "{}");
        assert_eq!(received["name"], "SMS");
        assert_eq!(received["retries"], 0);

        let result = json!({"sent": [true, null]});
        let succeeded = TaskEvent::Succeeded {
            result: &result,
            runtime: 0.25,
        }
        .fields("id-1");
        assert_eq!(succeeded["result"], "{'sent': [True, None]}");
        assert_eq!(succeeded["runtime"], 0.25);

        let exception = ExceptionInfo::new("ValueError", "builtins", "bad phone");
        let failed = TaskEvent::Failed {
            exception: &exception,
            traceback: "tb",
        }
        .fields("id-1");
        assert_eq!(failed["exception"], "ValueError('bad phone')");
        assert_eq!(failed["uuid"], "id-1");

        let revoked = TaskEvent::Revoked {
            terminated: true,
            expired: false,
        }
        .fields("id-1");
        assert_eq!(
            (revoked["terminated"].clone(), revoked["signum"].clone()),
            (json!(true), json!(15))
        );
    }
}

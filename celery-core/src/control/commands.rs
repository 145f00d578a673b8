//! The remote-control commands a worker answers (`celery/worker/control.py`),
//! each a function from the request's arguments and the worker's state to
//! its reply, with the same names and reply shapes as Celery's, so
//! `celery inspect`, `celery control` and Flower read ours as they read a
//! Python worker's.
//!
//! A few commands have effects beyond the reply — revoking stores REVOKED
//! results, `shutdown` stops the worker, `heartbeat` sends an event — so
//! [`handle`] returns an [`Outcome`] and the mailbox loop (`server.rs`)
//! carries them out.

use serde_json::{Map, Value, json};

use super::{
    request::Request,
    state::{Phase, RequestInfo, WorkerState},
};
use crate::protocol::{
    pyrepr::{args_repr, kwargs_repr},
    time::format_celery_time,
};

/// What does not change while the worker runs: what `stats`, `conf` and
/// `active_queues` report.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub pid: u32,
    pub concurrency: usize,
    pub blocking_pool: usize,
    pub prefetch_count: usize,
    pub queues: Vec<String>,
    /// The broker's connection facts, as kombu's `Connection.info()`.
    pub broker: Value,
    /// The registered task names, sorted.
    pub registered: Vec<String>,
    /// The settings `inspect conf` lists, by Celery's names.
    pub conf: Map<String, Value>,
}

/// What to do after a command.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Send this reply, if the sender wants one.
    Reply(Value),
    /// Revoked: store REVOKED for `ids` (those not running), then reply.
    Revoke { ids: Vec<String>, reply: Value },
    /// Send a heartbeat now (a cast: no reply).
    Heartbeat,
    /// Warm shutdown, and no reply: Celery's raises `SystemExit` before it
    /// can answer, so `celery control shutdown` hears nothing either.
    Shutdown,
}

/// Runs `request` against the worker.
pub fn handle(request: &Request, info: &WorkerInfo, state: &WorkerState) -> Outcome {
    let arguments = &request.arguments;
    let reply = match request.method.as_str() {
        "ping" => ok("pong"),
        "stats" => stats(info, state),
        "registered" | "dump_tasks" => json!(info.registered),
        "active" | "dump_active" => {
            let safe = arguments.get("safe").and_then(Value::as_bool) == Some(true);
            requests(state, Phase::Active, safe, info.pid, &state.hostname)
        }
        "reserved" | "dump_reserved" => {
            requests(state, Phase::Reserved, false, info.pid, &state.hostname)
        }
        "scheduled" | "dump_schedule" => scheduled(state, info.pid),
        "revoked" | "dump_revoked" => json!(state.revoked_ids()),
        "active_queues" => Value::Array(info.queues.iter().map(|q| queue(q)).collect()),
        "conf" | "dump_conf" => Value::Object(info.conf.clone()),
        "query_task" => query_task(state, arguments, info.pid),
        "revoke" => return revoke(state, arguments),
        "shutdown" => return Outcome::Shutdown,
        "heartbeat" => return Outcome::Heartbeat,
        "enable_events" => events(state, true),
        "disable_events" => events(state, false),
        "hello" => hello(state, arguments),
        // Known to Celery, meaningless here (no pool processes, no rate
        // limits, no time-limit changes at run time): a clear refusal.
        other => json!({"error": format!("KeyError('{other}')")}),
    };
    Outcome::Reply(reply)
}

fn ok(text: &str) -> Value {
    json!({"ok": text})
}

/// `stats`: Flower's worker page needs `total` and `broker`; `pool`,
/// `pid`, `prefetch_count`, `rusage` fill its tabs.
fn stats(info: &WorkerInfo, state: &WorkerState) -> Value {
    json!({
        "total": state.totals(),
        "pid": info.pid,
        "clock": state.clock.value().to_string(),
        "uptime": state.started.elapsed().as_secs(),
        "pool": {
            "implementation": "celery_core::worker (tokio tasks)",
            "max-concurrency": info.concurrency,
            "blocking-threads": info.blocking_pool,
            "processes": [info.pid],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": false,
            "timeouts": [0, 0],
        },
        "broker": info.broker,
        "prefetch_count": info.prefetch_count,
        "rusage": super::rusage::of_this_process(),
    })
}

/// `Request.info()`, for `active`, `reserved` and `scheduled`.
fn request_info(request: &RequestInfo, safe: bool, pid: u32, hostname: &str) -> Value {
    let message = &request.message;
    let (args, kwargs) = if safe {
        (
            json!(args_repr(&message.args)),
            json!(kwargs_repr(&message.kwargs)),
        )
    } else {
        (json!(message.args), json!(message.kwargs))
    };
    json!({
        "id": message.headers.id,
        "name": message.headers.task,
        "args": args,
        "kwargs": kwargs,
        "type": message.headers.task,
        "hostname": hostname,
        "time_start": request.time_start,
        "acknowledged": false,
        "delivery_info": {
            "exchange": "",
            "routing_key": request.queue,
            "priority": message.properties.priority,
            "redelivered": request.redelivered,
        },
        "worker_pid": pid,
    })
}

fn requests(state: &WorkerState, phase: Phase, safe: bool, pid: u32, hostname: &str) -> Value {
    Value::Array(
        state
            .requests(phase)
            .iter()
            .map(|request| request_info(request, safe, pid, hostname))
            .collect(),
    )
}

fn scheduled(state: &WorkerState, pid: u32) -> Value {
    Value::Array(
        state
            .requests(Phase::Scheduled)
            .iter()
            .map(|request| {
                json!({
                    "eta": request.eta.map(format_celery_time),
                    "priority": request.message.properties.priority,
                    "request": request_info(request, false, pid, &state.hostname),
                })
            })
            .collect(),
    )
}

/// `query_task ids…`: `{id: [state, info]}` for the ids this worker holds.
fn query_task(state: &WorkerState, arguments: &Map<String, Value>, pid: u32) -> Value {
    let wanted = ids(arguments.get("ids"));
    let mut found = Map::new();
    for phase in [Phase::Active, Phase::Reserved, Phase::Scheduled] {
        for request in state.requests(phase) {
            let id = &request.message.headers.id;
            if wanted.contains(id) {
                let phase_name = match phase {
                    Phase::Active => "active",
                    Phase::Reserved => "reserved",
                    Phase::Scheduled => "scheduled",
                };
                found.insert(
                    id.clone(),
                    json!([
                        phase_name,
                        request_info(&request, false, pid, &state.hostname)
                    ]),
                );
            }
        }
    }
    Value::Object(found)
}

/// kombu's `Queue.as_dict(recurse=True)` for one of our queues: Celery's
/// default durable direct queue. Flower's queue tab reads each key.
fn queue(name: &str) -> Value {
    json!({
        "name": name,
        "exchange": {
            "name": name, "type": "direct", "arguments": null, "durable": true,
            "passive": false, "auto_delete": false, "delivery_mode": null, "no_declare": false,
        },
        "routing_key": name,
        "queue_arguments": null,
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": true,
        "exclusive": false,
        "auto_delete": false,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": null,
    })
}

/// `task_id` is one id or a list (`celery control revoke a b` sends a list).
fn ids(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn revoke(state: &WorkerState, arguments: &Map<String, Value>) -> Outcome {
    let ids = ids(arguments.get("task_id"));
    let terminate = arguments
        .get("terminate")
        .is_some_and(|value| value.as_bool() == Some(true));
    let terminated = state.revoke(&ids, terminate);
    let reply = if terminate {
        if terminated.is_empty() {
            ok("terminate: tasks unknown")
        } else {
            ok(&format!("terminate: {}", terminated.join(", ")))
        }
    } else {
        ok(&format!("tasks {} flagged as revoked", python_set(&ids)))
    };
    Outcome::Revoke { ids, reply }
}

/// `{'a', 'b'}`, as Python prints a set of strings.
fn python_set(ids: &[String]) -> String {
    if ids.is_empty() {
        return "set()".to_owned();
    }
    let items: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("{{{}}}", items.join(", "))
}

fn events(state: &WorkerState, on: bool) -> Value {
    let was = state
        .task_events
        .swap(on, std::sync::atomic::Ordering::Relaxed);
    match (on, was) {
        (true, false) => {
            tracing::info!("Events of group {{task}} enabled by remote.");
            ok("task events enabled")
        }
        (true, true) => ok("task events already enabled"),
        (false, true) => {
            tracing::info!("Events of group {{task}} disabled by remote.");
            ok("task events disabled")
        }
        (false, false) => ok("task events already disabled"),
    }
}

/// Mingle: a worker starting up sends its revoked ids and takes ours. Our
/// own `hello` gets no answer from us (Celery's returns `None` to itself).
fn hello(state: &WorkerState, arguments: &Map<String, Value>) -> Value {
    let from = arguments.get("from_node").and_then(Value::as_str);
    if from == Some(state.hostname.as_str()) {
        return Value::Null;
    }
    if let Some(from) = from {
        tracing::info!("sync with {from}");
    }
    state.merge_revoked(ids(arguments.get("revoked")));
    json!({"revoked": state.revoked_ids(), "clock": state.clock.forward()})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::{SendOptions, TaskMessage};

    fn info() -> WorkerInfo {
        WorkerInfo {
            pid: 42,
            concurrency: 8,
            blocking_pool: 2,
            prefetch_count: 32,
            queues: vec!["celery".into()],
            broker: json!({"transport": "redis", "hostname": "127.0.0.1", "port": 6379}),
            registered: vec!["add".into(), "sms".into()],
            conf: Map::new(),
        }
    }

    fn call(method: &str, arguments: Value, state: &WorkerState) -> Outcome {
        let Value::Object(arguments) = arguments else {
            return Outcome::Reply(Value::Null);
        };
        handle(&Request::new(method, arguments), &info(), state)
    }

    fn reply(outcome: Outcome) -> Value {
        match outcome {
            Outcome::Reply(value) | Outcome::Revoke { reply: value, .. } => value,
            other => json!(format!("{other:?}")),
        }
    }

    #[test]
    fn ping_stats_and_registered_answer_as_celery() {
        let state = WorkerState::new("w@h", false);
        assert_eq!(
            reply(call("ping", json!({}), &state)),
            json!({"ok": "pong"})
        );
        let stats = reply(call("stats", json!({}), &state));
        for key in [
            "total",
            "broker",
            "pid",
            "uptime",
            "pool",
            "prefetch_count",
            "rusage",
            "clock",
        ] {
            assert!(stats.get(key).is_some(), "stats lacks {key}: {stats}");
        }
        assert_eq!(stats["pool"]["max-concurrency"], 8);
        assert_eq!(
            reply(call("registered", json!({}), &state)),
            json!(["add", "sms"])
        );
        let queues = reply(call("active_queues", json!({}), &state));
        for key in [
            "name",
            "exclusive",
            "durable",
            "routing_key",
            "no_ack",
            "alias",
            "queue_arguments",
            "binding_arguments",
            "auto_delete",
        ] {
            assert!(queues[0].get(key).is_some(), "Flower reads {key}");
        }
    }

    #[test]
    fn an_unknown_method_gets_celerys_error_reply() {
        let state = WorkerState::new("w@h", false);
        assert_eq!(
            reply(call("pool_grow", json!({"n": 1}), &state)),
            json!({"error": "KeyError('pool_grow')"})
        );
    }

    #[test]
    fn revoke_flags_ids_and_says_so() {
        let state = Arc::new(WorkerState::new("w@h", false));
        let outcome = call("revoke", json!({"task_id": ["a"]}), &state);
        assert_eq!(
            outcome,
            Outcome::Revoke {
                ids: vec!["a".into()],
                reply: json!({"ok": "tasks {'a'} flagged as revoked"})
            }
        );
        assert!(state.is_revoked("a"));
        let mut message = TaskMessage::new("add", vec![], Map::new(), &SendOptions::default());
        message.headers.id = "run".into();
        let running = state.received(Arc::new(message), "celery", false);
        let token = running.started("add");
        let outcome = call(
            "revoke",
            json!({"task_id": "run", "terminate": true}),
            &state,
        );
        assert_eq!(reply(outcome), json!({"ok": "terminate: run"}));
        assert!(token.is_cancelled());
        assert_eq!(
            reply(call("revoked", json!({}), &state)),
            json!(["a", "run"])
        );
    }

    #[test]
    fn events_switch_and_hello_trades_revoked_ids() {
        let state = WorkerState::new("w@h", false);
        assert_eq!(
            reply(call("enable_events", json!({}), &state)),
            json!({"ok": "task events enabled"})
        );
        assert!(state.task_events());
        assert_eq!(
            reply(call("enable_events", json!({}), &state)),
            json!({"ok": "task events already enabled"})
        );
        assert_eq!(
            reply(call("disable_events", json!({}), &state)),
            json!({"ok": "task events disabled"})
        );
        assert_eq!(call("shutdown", json!({}), &state), Outcome::Shutdown);

        state.merge_revoked(["mine".to_owned()]);
        let answer = reply(call(
            "hello",
            json!({"from_node": "other@h", "revoked": ["theirs"]}),
            &state,
        ));
        assert_eq!(answer["revoked"], json!(["mine", "theirs"]));
        assert!(answer["clock"].as_u64().is_some());
        assert_eq!(
            reply(call("hello", json!({"from_node": "w@h"}), &state)),
            Value::Null
        );
    }
}

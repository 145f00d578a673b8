//! Test-only file, compiled under `#[cfg(test)]` (see `mod.rs`).
//!
//! Golden tests: messages captured from a real Celery 5.7 (`delay()` of the
//! blog's `SMS` task, `../shared/celery-protocol.md` §A.1 and §C.1) against
//! what our decoder reads and our encoder writes, field by field.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::{Map, Value, json};

use super::{
    SendOptions, TaskMessage, amqp_table,
    message::DecodeError,
    redis_envelope::{self, priority_list},
};

/// `LRANGE celery 0 -1` after `send_sms_code.delay('13800000000', '123456')`.
const CAPTURED_ENVELOPE: &str = r#"{"body": "W1siMTM4MDAwMDAwMDAiLCAiMTIzNDU2Il0sIHt9LCB7ImNhbGxiYWNrcyI6IG51bGwsICJlcnJiYWNrcyI6IG51bGwsICJjaGFpbiI6IG51bGwsICJjaG9yZCI6IG51bGx9XQ==", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "SMS", "id": "f4182531-f679-46ec-8e9e-7fe901432661", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "f4182531-f679-46ec-8e9e-7fe901432661", "parent_id": null, "argsrepr": "('13800000000', '123456')", "kwargsrepr": "{}", "origin": "gen5791@vm", "ignore_result": false, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "f4182531-f679-46ec-8e9e-7fe901432661", "reply_to": "4574baa8-c92d-3323-bf6b-2fb44f128c69", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "9d77126f-8af2-4bb0-8c3d-f2150a43e6cb"}}"#;

const CAPTURED_BODY: &str = r#"[["13800000000", "123456"], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;

fn sms_message() -> TaskMessage {
    TaskMessage::new(
        "SMS",
        vec![json!("13800000000"), json!("123456")],
        Map::new(),
        &SendOptions::default(),
    )
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn decodes_the_captured_python_message() {
    let received = redis_envelope::decode(CAPTURED_ENVELOPE.as_bytes());
    assert_eq!(
        received.task_id.as_deref(),
        Some("f4182531-f679-46ec-8e9e-7fe901432661")
    );
    let message = received.message.unwrap();
    assert_eq!(message.headers.task, "SMS");
    assert_eq!(message.args, vec![json!("13800000000"), json!("123456")]);
    assert!(message.kwargs.is_empty());
    assert_eq!(message.headers.ignore_result, Some(false));
    assert_eq!(
        message.properties.reply_to.as_deref(),
        Some("4574baa8-c92d-3323-bf6b-2fb44f128c69")
    );
    assert_eq!(message.eta(), None);
    assert_eq!(message.hard_time_limit(), None);
}

#[test]
fn our_body_is_byte_identical_to_pythons() {
    assert_eq!(sms_message().body_json(), CAPTURED_BODY);
    let captured = object(CAPTURED_ENVELOPE);
    let body = BASE64.decode(captured["body"].as_str().unwrap()).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), CAPTURED_BODY);
}

#[test]
fn our_envelope_matches_pythons_field_by_field() {
    let ours = object(&redis_envelope::encode(&sms_message(), "celery"));
    let captured = object(CAPTURED_ENVELOPE);
    // Same keys, in the same order, at every level of the text.
    assert_eq!(
        key_sequence(&redis_envelope::encode(&sms_message(), "celery")),
        key_sequence(CAPTURED_ENVELOPE)
    );
    let keys = |map: &Map<String, Value>| {
        map.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (our_headers, their_headers) = (
        ours["headers"].as_object().unwrap(),
        captured["headers"].as_object().unwrap(),
    );
    assert_eq!(keys(our_headers), keys(their_headers));
    let (our_props, their_props) = (
        ours["properties"].as_object().unwrap(),
        captured["properties"].as_object().unwrap(),
    );
    assert_eq!(keys(our_props), keys(their_props));
    // Same values, except those that are unique per message or per process.
    for (name, value) in their_headers {
        match name.as_str() {
            "id" | "root_id" | "origin" => assert!(our_headers[name].is_string(), "{name}"),
            _ => assert_eq!(&our_headers[name], value, "header {name}"),
        }
    }
    assert_eq!(our_headers["root_id"], our_headers["id"]);
    for name in [
        "delivery_mode",
        "delivery_info",
        "priority",
        "body_encoding",
    ] {
        assert_eq!(our_props[name], their_props[name], "property {name}");
    }
    assert_eq!(our_props["correlation_id"], our_headers["id"]);
    assert_eq!(ours["body"], captured["body"]);
    assert_eq!(ours["content-type"], captured["content-type"]);
    assert_eq!(ours["content-encoding"], captured["content-encoding"]);
}

/// Every `"key": ` in a JSON text, in order (nested keys included).
fn key_sequence(json: &str) -> Vec<&str> {
    json.match_indices("\": ")
        .map(|(end, _)| {
            let start = json[..end].rfind('"').unwrap() + 1;
            &json[start..end]
        })
        .collect()
}

#[test]
fn each_message_gets_its_own_delivery_tag_and_id() {
    let message = sms_message();
    let (first, second) = (
        object(&redis_envelope::encode(&message, "celery")),
        object(&redis_envelope::encode(&message, "celery")),
    );
    assert_ne!(
        first["properties"]["delivery_tag"],
        second["properties"]["delivery_tag"]
    );
    assert_ne!(sms_message().headers.id, message.headers.id);
}

#[test]
fn amqp_headers_carry_the_captured_types() {
    // §C.1: lang S, task S, shadow V, retries I0, timelimit A[V,V], ignore_result t0, stamps F{}.
    let message = sms_message();
    let table = amqp_table::to_field_table(message.headers_value().as_object().unwrap());
    let tag = |name: &str| {
        table
            .inner()
            .get(name)
            .map(|value| value.get_type().get_id())
    };
    assert_eq!(tag("lang"), Some('S'));
    assert_eq!(tag("shadow"), Some('V'));
    assert_eq!(tag("retries"), Some('I'));
    assert_eq!(tag("timelimit"), Some('A'));
    assert_eq!(tag("ignore_result"), Some('t'));
    assert_eq!(tag("stamps"), Some('F'));
    assert_eq!(
        table.inner().len(),
        object(CAPTURED_ENVELOPE)["headers"]
            .as_object()
            .unwrap()
            .len()
    );
}

#[test]
fn a_retry_keeps_the_id_and_counts_up() {
    let message = sms_message();
    let eta = chrono::Utc::now();
    let retry = message.retry(eta);
    assert_eq!(retry.headers.id, message.headers.id);
    assert_eq!(retry.headers.retries, 1);
    assert_eq!(
        retry.headers.parent_id.as_deref(),
        Some(message.headers.id.as_str())
    );
    assert_eq!(
        retry.eta().map(|t| t.timestamp_micros()),
        Some(eta.timestamp_micros())
    );
}

#[test]
fn a_foreign_minimal_message_is_accepted() {
    // §A.9: only task and id headers, body as plain JSON text, no properties.
    let raw = r#"{"body": "[[\"13800000000\", \"1234\"], {}, {}]", "content-type": "application/json", "content-encoding": "utf-8", "headers": {"task": "SMS", "id": "x1"}, "properties": {"delivery_tag": "t1", "delivery_info": {"exchange": "", "routing_key": "celery"}}}"#;
    let message = redis_envelope::decode(raw.as_bytes()).message.unwrap();
    assert_eq!(message.headers.task, "SMS");
    assert_eq!(message.properties.correlation_id, "x1");
    assert_eq!(message.args.len(), 2);
}

#[test]
fn bad_messages_are_errors_that_still_name_the_task() {
    let envelope = |headers: &str, body: &str, content_type: &str| {
        format!(
            r#"{{"body": {}, "content-type": "{content_type}", "headers": {headers}, "properties": {{}}}}"#,
            serde_json::to_string(body).unwrap()
        )
    };
    let cases = [
        (
            envelope(
                r#"{"task": "SMS", "id": "a"}"#,
                "[[], {}]",
                "application/json",
            ),
            "expected 3 elements",
        ),
        (
            envelope(
                r#"{"task": "SMS", "id": "b"}"#,
                "{not json",
                "application/json",
            ),
            "not valid JSON",
        ),
        (
            envelope(
                r#"{"task": "SMS", "id": "c"}"#,
                "x",
                "application/x-python-serialize",
            ),
            "only application/json",
        ),
        (
            envelope(
                r#"{"task": "SMS", "id": "d", "retries": "2"}"#,
                "[[], {}, {}]",
                "application/json",
            ),
            "'retries' must be an integer",
        ),
        (
            envelope(
                r#"{"task": "SMS", "id": "e", "eta": "soon"}"#,
                "[[], {}, {}]",
                "application/json",
            ),
            "ISO-8601",
        ),
        (
            envelope(
                r#"{"task": "SMS", "id": "f"}"#,
                r#"["a", {}, {}]"#,
                "application/json",
            ),
            "args must be a list",
        ),
    ];
    for (raw, needle) in cases {
        let received = redis_envelope::decode(raw.as_bytes());
        assert!(received.task_id.is_some(), "{raw}");
        let error = received.message.unwrap_err().to_string();
        assert!(error.contains(needle), "{error} should contain {needle}");
    }
    let garbage = redis_envelope::decode(b"not json at all");
    assert!(matches!(garbage.message, Err(DecodeError::BadEnvelope(_))));
}

#[test]
fn priorities_map_to_kombus_lists() {
    assert_eq!(priority_list("celery", 0), "celery");
    assert_eq!(priority_list("celery", 5), "celery\x06\x163");
    assert_eq!(priority_list("celery", 9), "celery\x06\x169");
}

// The logic of the fuzz target `canvas` (see `fuzz_targets/canvas.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use celery_core::{
    canvas::{Lineage, apply, expression, follow_up},
    protocol::{TaskMessage, TaskProperties},
};
use serde_json::{Map, Value, json};

fn properties() -> TaskProperties {
    TaskProperties {
        correlation_id: "f4182531-f679-46ec-8e9e-7fe901432661".to_owned(),
        reply_to: None,
        delivery_mode: 2,
        priority: 0,
    }
}

fn headers() -> Map<String, Value> {
    match json!({"task": "add", "id": "f4182531-f679-46ec-8e9e-7fe901432661", "group": "g"}) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn round_trips(message: &TaskMessage) {
    let again = TaskMessage::decode(
        "application/json",
        match message.headers_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        message.properties.clone(),
        message.body_json().as_bytes(),
    )
    .unwrap_or_else(|error| panic!("a planned message does not decode: {error}")); // ok-panic: a fuzz property; libFuzzer saves the input
    assert_eq!(&again, message, "a planned message does not round-trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = TaskMessage::decode("application/json", headers(), properties(), data) {
        if let Ok(plan) = follow_up::after_success(&message, &json!(4)) {
            plan.messages
                .iter()
                .for_each(|out| round_trips(&out.message));
        }
        if let Ok(after) = follow_up::after_failure(&message) {
            after
                .errbacks
                .messages
                .iter()
                .for_each(|out| round_trips(&out.message));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut signature) = expression::parse(text) else {
        return;
    };
    let Ok(awaited) = celery_core::canvas::freeze(&mut signature) else {
        return;
    };
    if let Ok(plan) = apply(signature, &[], &Lineage::default()) {
        for out in &plan.messages {
            round_trips(&out.message);
        }
        // A single task is sent under the very id the caller waits on.
        if let ([one], [out]) = (&awaited.ids()[..], &plan.messages[..])
            && plan.chord_sizes.is_empty()
            && out.message.embed.chain.is_null()
        {
            assert_eq!(*one, out.message.headers.id);
        }
    }
});

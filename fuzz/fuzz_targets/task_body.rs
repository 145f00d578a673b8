//! Fuzz target: a task body `[args, kwargs, embed]` and what the worker does
//! with it: decode it (`TaskMessage::decode`), bind the arguments the way
//! Python would (`tasks::bind_arguments`), and run the blog's SMS task on
//! them (with the console gateway: nothing leaves the machine).
//!
//! Properties: nothing panics; a body that decodes is written again
//! (`body_json`, as a retry is) and decodes to the same message.

#![no_main]

use std::time::Duration;

use celery_sms_demo::{
    protocol::{TaskMessage, TaskProperties},
    sms::Gateway,
    tasks::{Registry, bind_arguments},
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn headers(task: &str) -> Map<String, Value> {
    match json!({"task": task, "id": "f4182531-f679-46ec-8e9e-7fe901432661"}) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn properties() -> TaskProperties {
    TaskProperties {
        correlation_id: "f4182531-f679-46ec-8e9e-7fe901432661".to_owned(),
        reply_to: None,
        delivery_mode: 2,
        priority: 0,
    }
}

fuzz_target!(|body: &[u8]| {
    let Ok(message) = TaskMessage::decode("application/json", headers("SMS"), properties(), body)
    else {
        return;
    };
    let again = TaskMessage::decode(
        "application/json",
        headers("SMS"),
        properties(),
        message.body_json().as_bytes(),
    )
    .unwrap_or_else(|error| panic!("our own body does not decode: {error}"));
    assert_eq!(again, message, "the body does not round-trip");

    for parameters in [&["mobile", "sms_code"][..], &["x", "y"], &["numbers"], &[]] {
        if let Ok(bound) = bind_arguments("task", parameters, &message.args, &message.kwargs) {
            assert_eq!(bound.len(), parameters.len());
        }
    }
    let registry = Registry::new(
        Gateway::Console(Default::default()),
        None,
        Duration::from_secs(1),
    );
    futures_lite::future::block_on(registry.run(&message));
});

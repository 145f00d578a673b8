// The logic of the fuzz target `task_body` (see `fuzz_targets/task_body.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use std::time::Duration;

use celery_core::{
    protocol::{TaskMessage, TaskProperties},
    task::{Request, bind_arguments},
};
use celery_sms_demo::{first_steps, sms::Gateway, sms_task::SmsTask};
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
    .unwrap_or_else(|error| panic!("our own body does not decode: {error}")); // ok-panic: a fuzz property; libFuzzer saves the input
    assert_eq!(again, message, "the body does not round-trip");

    for parameters in [
        &["mobile", "sms_code"][..],
        &["x", "y"],
        &["numbers"],
        &[],
        &["x", "y", "z=None"],
        &["*args"],
        &["i", "**_"],
        &["a", "b=1", "*rest", "**options"],
    ] {
        if let Ok(bound) = bind_arguments("task", parameters, &message.args, &message.kwargs) {
            // One value per named parameter, one list for *args, one
            // object for **kwargs.
            assert_eq!(bound.len(), parameters.len());
        }
    }
    let sms = SmsTask::new(
        Gateway::Console(Default::default()),
        None,
        Duration::from_secs(1),
    );
    let request = Request::new(message.headers.id.clone(), message.headers.task.clone())
        .with_retries(message.headers.retries);
    for task in [
        sms.task(),
        first_steps::add(),
        first_steps::mul(),
        first_steps::xsum(),
        first_steps::noop(),
    ] {
        let _ = futures_lite::future::block_on(task.call(
            request.clone(),
            &message.args,
            &message.kwargs,
        ));
    }
});

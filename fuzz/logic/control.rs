// The logic of the fuzz target `control` (see `fuzz_targets/control.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use std::sync::Arc;

use celery_core::{
    control::{
        Request,
        commands::{WorkerInfo, handle},
        revoked::MAX_REVOKED,
        state::WorkerState,
    },
    protocol::redis_envelope::decode_other,
};
use serde_json::{Map, Value};

fuzz_target!(|raw: &[u8]| {
    let body = match decode_other(raw) {
        Some((_headers, body)) => body,
        None => match serde_json::from_slice::<Value>(raw) {
            Ok(body) => body,
            Err(_) => return,
        },
    };
    let Some(request) = Request::parse(&body) else {
        return;
    };
    let state = Arc::new(WorkerState::new("fuzz@host", false));
    if !request.is_for(&state.hostname) {
        return;
    }
    let info = WorkerInfo {
        pid: 1,
        concurrency: 1,
        blocking_pool: 1,
        prefetch_count: 4,
        queues: vec!["celery".into()],
        broker: Value::Null,
        registered: vec!["add".into()],
        conf: Map::new(),
    };
    let _ = handle(&request, &info, &state);
    assert!(state.revoked_ids().len() <= MAX_REVOKED);
});

// The logic of the fuzz target `redis_envelope` (see `fuzz_targets/redis_envelope.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use celery_core::protocol::redis_envelope::{decode, encode};

fuzz_target!(|raw: &[u8]| {
    let received = decode(raw);
    let Ok(message) = received.message else {
        return;
    };
    assert_eq!(
        received.task_id.as_deref(),
        Some(message.headers.id.as_str())
    );
    let again = decode(encode(&message, "celery").as_bytes());
    let again = again
        .message
        .unwrap_or_else(|error| panic!("our own envelope does not decode: {error}")); // ok-panic: a fuzz property; libFuzzer saves the input
    assert_eq!(again, message, "the envelope does not round-trip");
});

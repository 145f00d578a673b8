//! Fuzz target: a kombu envelope popped from a Redis list
//! (`protocol::redis_envelope::decode`), whatever its bytes.
//!
//! Properties: decoding never panics; a message that decodes is encoded
//! again (`encode`, as our producer and a restore write it) and decodes to
//! the same message.

#![no_main]

use celery_core::protocol::redis_envelope::{decode, encode};
use libfuzzer_sys::fuzz_target;

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

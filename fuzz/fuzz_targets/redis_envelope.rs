//! Fuzz target: a kombu envelope popped from a Redis list
//! (`protocol::redis_envelope::decode`), whatever its bytes.
//!
//! Properties: decoding never panics; a message that decodes is encoded
//! again (`encode`, as our producer and a restore write it) and decodes to
//! the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/redis_envelope.rs");

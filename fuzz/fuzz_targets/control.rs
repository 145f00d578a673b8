//! Fuzz target: a remote-control message off the mailbox, whatever its
//! bytes — kombu's Redis envelope (`redis_envelope::decode_other`) or an
//! AMQP body (JSON) — read as a request and run against a worker's state
//! (`control::request`, `control::commands`). Anybody who can publish on
//! the broker can send one.
//!
//! Properties: nothing panics; every request gets an outcome; the revoked
//! set stays within its bound.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/control.rs");

//! Fuzz target: an AMQP delivery's header table and body, as RabbitMQ hands
//! them to the worker (`broker::amqp::decode_delivery`).
//!
//! The input is split in two: an AMQP field table in its wire encoding (what
//! py-amqp, pika or any other client wrote), parsed with lapin's own parser,
//! then the message body. Properties: nothing panics; the table mapped to
//! JSON headers, back to a table and to JSON again gives the same headers;
//! a task that decodes carries the table's task id.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/amqp_headers.rs");

//! Fuzz target: an AMQP delivery's header table and body, as RabbitMQ hands
//! them to the worker (`broker::amqp::decode_delivery`).
//!
//! The input is split in two: an AMQP field table in its wire encoding (what
//! py-amqp, pika or any other client wrote), parsed with lapin's own parser,
//! then the message body. Properties: nothing panics; the table mapped to
//! JSON headers, back to a table and to JSON again gives the same headers;
//! a task that decodes carries the table's task id.

#![no_main]

use celery_core::{
    broker::amqp::decode_delivery,
    protocol::amqp_table::{from_field_table, to_field_table},
};
use lapin::{BasicProperties, types::parsing::parse_field_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok((body, table)) = parse_field_table(input) else {
        return;
    };
    let headers = from_field_table(&table);
    assert_eq!(
        from_field_table(&to_field_table(&headers)),
        headers,
        "the header table does not round-trip"
    );
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(table);
    let received = decode_delivery(&properties, body);
    if let Ok(message) = received.message {
        assert_eq!(
            received.task_id.as_deref(),
            Some(message.headers.id.as_str())
        );
    }
});

// The logic of the fuzz target `amqp_headers` (see `fuzz_targets/amqp_headers.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use celery_core::{
    broker::amqp::decode_delivery,
    protocol::amqp_table::{from_field_table, to_field_table},
};
use lapin::{BasicProperties, types::parsing::parse_field_table};

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

//! Task headers as an AMQP field table, with py-amqp's type tags.
//!
//! Over RabbitMQ the headers travel in the message's `headers` property, an
//! AMQP *field table*, where each value carries a type tag. Python's py-amqp
//! picks them as str→`S` (long string), None→`V` (void), bool→`t`,
//! int→`I` (32-bit; beyond that lapin writes RabbitMQ's `l`, which py-amqp
//! reads like its own `L`), float→`d`, list→`A`, dict→`F`
//! (`celery-protocol.md` §C.1). We write the same tags, so a Python worker
//! sees exactly the types it would get from a Python producer; when reading
//! we accept every tag, since other clients pick differently.

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use serde_json::{Map, Number, Value};

/// JSON header object → AMQP field table.
pub fn to_field_table(headers: &Map<String, Value>) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(name.as_str().into(), to_amqp_value(value));
    }
    table
}

fn to_amqp_value(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(flag) => AMQPValue::Boolean(*flag),
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => match i32::try_from(int) {
                Ok(small) => AMQPValue::LongInt(small),
                Err(_) => AMQPValue::LongLongInt(int),
            },
            // Above i64: AMQP's only unsigned 64-bit type is the timestamp
            // (it is how such a number arrives, too); a double would round it.
            (None, Some(big)) => AMQPValue::Timestamp(big),
            (None, None) => AMQPValue::Double(number.as_f64().unwrap_or(0.0)),
        },
        Value::String(text) => AMQPValue::LongString(LongString::from(text.as_bytes())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(to_amqp_value).collect::<Vec<_>>(),
        )),
        Value::Object(map) => AMQPValue::FieldTable(to_field_table(map)),
    }
}

/// AMQP field table → JSON header object.
pub fn from_field_table(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), from_amqp_value(value)))
        .collect()
}

fn from_amqp_value(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Void => Value::Null,
        AMQPValue::Boolean(flag) => Value::Bool(*flag),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Float(n) => Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(decimal) => {
            let scaled = f64::from(decimal.value) / 10f64.powi(i32::from(decimal.scale));
            Number::from_f64(scaled).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(text) => Value::String(text.as_str().to_owned()),
        AMQPValue::LongString(text) => {
            Value::String(String::from_utf8_lossy(text.as_bytes()).into_owned())
        }
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(from_amqp_value).collect())
        }
        AMQPValue::Timestamp(seconds) => Value::from(*seconds),
        AMQPValue::FieldTable(table) => Value::Object(from_field_table(table)),
        AMQPValue::ByteArray(bytes) => {
            Value::String(String::from_utf8_lossy(bytes.as_slice()).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn uses_py_amqp_type_tags() {
        let headers = json!({"task": "SMS", "eta": null, "retries": 0, "ignore_result": false,
                             "timelimit": [null, null], "stamps": {}, "big": 4_000_000_000i64, "f": 1.5});
        let table = to_field_table(headers.as_object().unwrap());
        let tags: Vec<(String, char)> = table
            .inner()
            .iter()
            .map(|(name, value)| (name.to_string(), value.get_type().get_id()))
            .collect();
        for expected in [
            ("task", 'S'),
            ("eta", 'V'),
            ("retries", 'I'),
            ("ignore_result", 't'),
            ("timelimit", 'A'),
            ("stamps", 'F'),
            ("big", 'l'),
            ("f", 'd'),
        ] {
            assert!(
                tags.contains(&(expected.0.to_owned(), expected.1)),
                "{expected:?} not in {tags:?}"
            );
        }
        assert_eq!(Value::Object(from_field_table(&table)), headers);
    }

    /// Found by the `amqp_headers` fuzz target: a timestamp header above
    /// i64::MAX came back as a rounded double.
    #[test]
    fn numbers_above_i64_round_trip() {
        let headers = json!({"retries": 15925009757358784512u64});
        let table = to_field_table(headers.as_object().unwrap());
        assert_eq!(Value::Object(from_field_table(&table)), headers);
    }
}

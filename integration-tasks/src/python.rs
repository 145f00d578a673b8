//! Python's `+`, `*`, `sum()` and truth on JSON values: the integration
//! suite's arithmetic tasks add whatever they are sent (numbers, strings,
//! lists), and a wrong operand must fail with Python's own `TypeError`.

use celery_core::task::{TaskError, TaskResult};
use serde_json::{Number, Value};

/// Python's name for a value's type, as `TypeError` texts say it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A number as Python sees it (`True` is 1).
enum Num {
    Int(i64),
    Float(f64),
}

fn num(value: &Value) -> Option<Num> {
    match value {
        Value::Bool(flag) => Some(Num::Int(i64::from(*flag))),
        Value::Number(number) => number
            .as_i64()
            .map(Num::Int)
            .or_else(|| number.as_f64().map(Num::Float)),
        _ => None,
    }
}

fn float(value: f64) -> TaskResult<Value> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| TaskError::fail("OverflowError", "builtins", "float result is not finite"))
}

fn overflow() -> TaskError {
    // Python's ints do not overflow; ours are 64 bits.
    TaskError::fail(
        "OverflowError",
        "builtins",
        "integer result does not fit in 64 bits",
    )
}

fn unsupported(operator: &str, a: &Value, b: &Value) -> TaskError {
    TaskError::fail(
        "TypeError",
        "builtins",
        format!(
            "unsupported operand type(s) for {operator}: '{}' and '{}'",
            type_name(a),
            type_name(b)
        ),
    )
}

/// `a + b`.
pub fn add(a: &Value, b: &Value) -> TaskResult<Value> {
    match (a, b) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => Ok(Value::Array([a.as_slice(), b].concat())),
        _ => match (num(a), num(b)) {
            (Some(Num::Int(a)), Some(Num::Int(b))) => {
                a.checked_add(b).map(Value::from).ok_or_else(overflow)
            }
            (Some(a), Some(b)) => float(as_f64(a) + as_f64(b)),
            _ => Err(unsupported("+", a, b)),
        },
    }
}

/// `a * b`, for numbers.
pub fn mul(a: &Value, b: &Value) -> TaskResult<Value> {
    match (num(a), num(b)) {
        (Some(Num::Int(a)), Some(Num::Int(b))) => {
            a.checked_mul(b).map(Value::from).ok_or_else(overflow)
        }
        (Some(a), Some(b)) => float(as_f64(a) * as_f64(b)),
        _ => Err(unsupported("*", a, b)),
    }
}

fn as_f64(number: Num) -> f64 {
    match number {
        // Exact up to 2^53, as Python's int + float is.
        #[allow(clippy::cast_precision_loss)]
        Num::Int(int) => int as f64,
        Num::Float(float) => float,
    }
}

/// `sum(items)`: from 0, with `+`.
pub fn sum(items: &[Value]) -> TaskResult<Value> {
    items
        .iter()
        .try_fold(Value::from(0), |total, item| add(&total, item))
}

/// `if value:`.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// `str(value)` for what redis-py accepts (`str`, `int`, `float`): the
/// bytes a Python task would push.
pub fn redis_bytes(value: &Value) -> TaskResult<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(TaskError::fail(
            "DataError",
            "redis.exceptions",
            format!(
                "Invalid input of type: '{}'. Convert to a bytes, string, int or float first.",
                type_name(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn adds_as_python_adds() {
        assert_eq!(add(&json!(2), &json!(3)), Ok(json!(5)));
        assert_eq!(add(&json!(2), &json!(0.5)), Ok(json!(2.5)));
        assert_eq!(add(&json!("a"), &json!("b")), Ok(json!("ab")));
        assert_eq!(add(&json!([1]), &json!([2])), Ok(json!([1, 2])));
        let Err(error) = add(&json!(1), &json!("a")) else {
            panic!("int + str must fail");
        };
        assert_eq!(
            error.to_string(),
            "TypeError(\"unsupported operand type(s) for +: 'int' and 'str'\")"
        );
        assert!(add(&json!(i64::MAX), &json!(1)).is_err());
    }

    #[test]
    fn sums_and_truth_as_python() {
        assert_eq!(sum(&[json!(1), json!(2), json!(3)]), Ok(json!(6)));
        assert_eq!(sum(&[]), Ok(json!(0)));
        assert!(sum(&[json!([1])]).is_err());
        assert!(!truthy(&json!(0)) && !truthy(&Value::Null) && truthy(&json!(3)));
        assert_eq!(mul(&json!(6), &json!(7)), Ok(json!(42)));
        assert_eq!(redis_bytes(&json!(42)), Ok("42".to_owned()));
        assert!(redis_bytes(&Value::Null).is_err());
    }
}

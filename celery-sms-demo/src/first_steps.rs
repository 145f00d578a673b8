//! Celery's "First steps" tasks, under their exact names, and the benchmark's
//! `noop`: what the canvas examples of Celery's own docs are made of.
//!
//! ```python
//! @app.task
//! def add(x, y):
//!     return x + y
//!
//! @app.task
//! def mul(x, y):
//!     return x * y
//!
//! @app.task
//! def xsum(numbers):
//!     return sum(numbers)
//! ```
//!
//! so that `chain(add.s(2, 2), mul.s(8))` or `chord(add.s(i, i) for i in
//! range(10))(xsum.s())` sent by a Python app runs here unchanged. They work
//! on numbers as Python does: integers stay exact integers (a sum too big for
//! 64 bits becomes a float, where Python would grow a big integer), and a
//! float anywhere makes the result a float.

use celery_core::task::{Task, TaskError, TaskResult};
use serde_json::{Number, Value};

/// `add(x, y)`.
pub fn add() -> Task {
    Task::new("add", &["x", "y"], |(x, y): (Number, Number)| async move {
        arithmetic(&x, &y, i128::checked_add, |x, y| x + y)
    })
}

/// `mul(x, y)`.
pub fn mul() -> Task {
    Task::new("mul", &["x", "y"], |(x, y): (Number, Number)| async move {
        arithmetic(&x, &y, i128::checked_mul, |x, y| x * y)
    })
}

/// `xsum(numbers)`: `sum(numbers)`, 0 for an empty list.
pub fn xsum() -> Task {
    Task::new(
        "xsum",
        &["numbers"],
        |(numbers,): (Vec<Number>,)| async move {
            numbers
                .iter()
                .try_fold(Value::from(0), |total, number| match total {
                    Value::Number(total) => {
                        arithmetic(&total, number, i128::checked_add, |x, y| x + y)
                    }
                    other => Ok(other),
                })
        },
    )
}

/// `noop()`: does nothing, so a benchmark measures the worker, not the task.
pub fn noop() -> Task {
    Task::new("noop", &[], |(): ()| async { TaskResult::Ok(()) })
}

/// `x ∘ y` in integers when both are integers and the answer fits, else in
/// floats; a float answer JSON cannot carry (inf, NaN) is Python's
/// `OverflowError`.
fn arithmetic(
    x: &Number,
    y: &Number,
    integers: fn(i128, i128) -> Option<i128>,
    floats: fn(f64, f64) -> f64,
) -> TaskResult<Value> {
    let whole = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    if let (Some(x), Some(y)) = (whole(x), whole(y))
        && let Some(exact) = integers(x, y)
    {
        if let Ok(small) = i64::try_from(exact) {
            return Ok(Value::from(small));
        }
        if let Ok(big) = u64::try_from(exact) {
            return Ok(Value::from(big));
        }
    }
    let (x, y) = (
        x.as_f64().unwrap_or(f64::NAN),
        y.as_f64().unwrap_or(f64::NAN),
    );
    Number::from_f64(floats(x, y))
        .map(Value::Number)
        .ok_or_else(|| {
            TaskError::fail(
                "OverflowError",
                "builtins",
                "the result is too large to be a number",
            )
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(value: Value) -> Number {
        match value {
            Value::Number(number) => number,
            other => panic!("not a number: {other}"),
        }
    }

    fn add_of(x: Value, y: Value) -> TaskResult<Value> {
        arithmetic(&number(x), &number(y), i128::checked_add, |x, y| x + y)
    }

    #[test]
    fn integers_stay_integers_and_floats_spread() {
        assert_eq!(add_of(json!(2), json!(2)), Ok(json!(4)));
        assert_eq!(add_of(json!(2), json!(0.5)), Ok(json!(2.5)));
        assert_eq!(
            add_of(json!(i64::MAX), json!(1)),
            Ok(json!(9223372036854775808u64))
        );
        assert_eq!(
            add_of(json!(u64::MAX), json!(1)),
            Ok(json!(1.8446744073709552e19))
        );
        let Err(TaskError::Fail(error)) = add_of(json!(1e308), json!(1e308)) else {
            panic!("inf is not a JSON number");
        };
        assert_eq!(error.exc_type, "OverflowError");
    }
}

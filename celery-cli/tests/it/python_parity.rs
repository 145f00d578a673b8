//! What the task API copies from Python, checked against the venv's real
//! Python and Celery 5.7, not against our idea of them: the `TypeError`
//! a wrong call raises, and Celery's retry backoff.

use std::{process::Command, time::Duration};

use celery_core::task::{TaskOptions, bind_arguments};
use serde_json::{Map, Value, json};

use shared::testing::venv_python as python;

/// Runs `script` in the venv's Python and returns its output lines.
fn run_python(script: &str) -> Vec<String> {
    let output = Command::new(python())
        .args(["-c", script])
        .output()
        .expect("run scripts/python-env first (scripts/test does)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each case: a Python signature, our parameters for it, and a call.
const CALLS: &[(&str, &[&str], &str, &str)] = &[
    (
        "f(x, y, z=None)",
        &["x", "y", "z=None"],
        "[1, 2, 3, 4]",
        "{}",
    ),
    ("f(a, b, c)", &["a", "b", "c"], "[]", "{}"),
    (
        "f(x, y, z=None)",
        &["x", "y", "z=None"],
        "[]",
        r#"{"z": 1}"#,
    ),
    ("f()", &[], "[1]", "{}"),
    ("f(x)", &["x"], "[1, 2]", "{}"),
    (
        "f(x, y, z=None)",
        &["x", "y", "z=None"],
        "[1]",
        r#"{"x": 1}"#,
    ),
    ("f(*args)", &["*args"], "[]", r#"{"k": 1}"#),
    ("f(i, **_)", &["i", "**_"], "[]", r#"{"k": 1}"#),
    (
        "f(message, redis_key='redis-echo')",
        &["message", "redis_key='redis-echo'"],
        "[1, 2, 3]",
        "{}",
    ),
];

#[test]
fn wrong_calls_fail_with_pythons_own_type_errors() {
    let mut script = String::from("import json\n");
    for (signature, _, args, kwargs) in CALLS {
        script.push_str(&format!(
            "def {signature}: pass\ntry:\n    f(*json.loads('{args}'), **json.loads('{kwargs}'))\n    print('bound')\nexcept TypeError as e:\n    print(e)\n"
        ));
    }
    let python = run_python(&script);
    assert_eq!(python.len(), CALLS.len(), "{python:?}");
    for ((_, parameters, args, kwargs), expected) in CALLS.iter().zip(&python) {
        let args: Vec<Value> = serde_json::from_str(args).unwrap();
        let kwargs: Map<String, Value> = serde_json::from_str(kwargs).unwrap();
        let ours = match bind_arguments("f", parameters, &args, &kwargs) {
            Ok(_) => "bound".to_owned(),
            Err(exception) => exception.exc_message[0].as_str().unwrap().to_owned(),
        };
        assert_eq!(
            &ours, expected,
            "{parameters:?} called with {args:?} {kwargs:?}"
        );
    }
}

#[test]
fn automatic_retries_back_off_as_celery_does() {
    let celery = run_python(
        "from celery.utils.time import get_exponential_backoff_interval as b\nprint([b(2, r, 600, False) for r in range(12)])",
    );
    let mut options = TaskOptions::default();
    options.retry_backoff = Some(2);
    options.retry_backoff_max = Duration::from_secs(600);
    options.retry_jitter = false;
    let ours: Vec<u64> = (0..12)
        .map(|retries| {
            options
                .autoretry_countdown(retries, &mut rand::rng())
                .as_secs()
        })
        .collect();
    assert_eq!(celery, [json!(ours).to_string().replace(',', ", ")]);
}

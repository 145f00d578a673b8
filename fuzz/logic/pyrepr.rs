// The logic of the fuzz target `pyrepr` (see `fuzz_targets/pyrepr.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use celery_core::protocol::{
    json::to_python_json,
    pyrepr::{abbreviate, args_repr, kwargs_repr, repr},
};
use serde_json::Value;

/// Reads a Python string literal as `repr()` writes one: quoted with ' or ",
/// escapes `\\ \n \r \t \' \" \xNN`.
fn read_python_literal(literal: &str) -> Option<String> {
    let mut chars = literal.chars();
    let quote = chars.next()?;
    let inner = chars.as_str().strip_suffix(quote)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return None; // an unescaped quote would end the literal early
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let literal = repr(&Value::String(text.to_string()));
    assert_eq!(
        read_python_literal(&literal).as_deref(),
        Some(&*text),
        "repr() of a string is not a literal of it: {literal}"
    );
    for max in [0, 1, 24, 1024] {
        let cut = abbreviate(&text, max);
        if text.chars().count() <= max {
            assert_eq!(cut, text);
        }
    }
    let Ok(value) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    let _ = repr(&value);
    if let Value::Array(args) = &value {
        let _ = args_repr(args);
    }
    if let Value::Object(kwargs) = &value {
        let _ = kwargs_repr(kwargs);
    }
    let written = to_python_json(&value);
    assert!(
        written.is_ascii(),
        "json.dumps writes ASCII only: {written}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&written).ok(),
        Some(value),
        "our json.dumps does not round-trip"
    );
});

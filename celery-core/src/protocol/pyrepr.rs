//! Python's `repr()` of task arguments, for the `argsrepr`/`kwargsrepr`
//! headers.
//!
//! Those headers are display-only (Flower and the worker log show them), but a
//! Python producer always sets them, so ours does too:
//! `send_sms_code.delay('13800000000', '123456')` carries
//! `argsrepr = "('13800000000', '123456')"` and `kwargsrepr = "{}"`.
//!
//! [`abbreviate`] cuts such a repr (or any bad value) down to size for a log
//! line or an error message.

use serde_json::{Map, Value};

/// `repr(tuple(args))`: `('a', 'b')`, `('a',)`, `()`.
pub fn args_repr(args: &[Value]) -> String {
    let items: Vec<String> = args.iter().map(repr).collect();
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

/// `repr(kwargs)`: `{'mobile': '138…'}`.
pub fn kwargs_repr(kwargs: &Map<String, Value>) -> String {
    dict_repr(kwargs)
}

/// For messages and log lines: `text` whole if it is at most `max_chars`
/// long, else its start and its length — a 200 KB argument must not become
/// a 200 KB log line.
pub fn abbreviate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} characters)", &text[..end], text.chars().count()),
    }
}

/// `repr()` of one JSON value as the Python object json.loads would give.
pub fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => str_repr(text),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => dict_repr(map),
    }
}

fn dict_repr(map: &Map<String, Value>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(key, value)| format!("{}: {}", str_repr(key), repr(value)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Python prefers single quotes, and switches to double quotes when the text
/// contains a single quote but no double quote.
fn str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn matches_the_captured_headers() {
        assert_eq!(
            args_repr(&[json!("13800000000"), json!("123456")]),
            "('13800000000', '123456')"
        );
        assert_eq!(kwargs_repr(&Map::new()), "{}");
    }

    #[test]
    fn follows_python_repr_rules() {
        assert_eq!(args_repr(&[json!(1)]), "(1,)");
        assert_eq!(args_repr(&[]), "()");
        assert_eq!(
            repr(&json!({"a": [null, true, 1.5], "b": "it's"})),
            "{'a': [None, True, 1.5], 'b': \"it's\"}"
        );
        assert_eq!(repr(&json!("验证码")), "'验证码'");
    }
}

//! JSON exactly as kombu writes it.
//!
//! Celery serialises with Python's `json.dumps`, whose defaults differ from
//! serde_json's compact output in two visible ways: separators are `", "` and
//! `": "`, and every non-ASCII character is escaped (`"验证码"` travels as
//! `"\u9a8c\u8bc1\u7801"`). Neither matters to a JSON parser, but writing the
//! same bytes as Python makes our messages diff-able against captured ones
//! and keeps the golden tests honest.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// Serialises `value` the way `json.dumps` (and so kombu) would.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut serializer = Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising plain data into a Vec cannot fail; an error here would be a
    // bug in a Serialize impl, and an empty document is the safe answer.
    if value.serialize(&mut serializer).is_err() {
        return String::new();
    }
    // The formatter only ever writes ASCII.
    String::from_utf8(out).unwrap_or_default()
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // `ensure_ascii=True`: anything outside ASCII becomes \uXXXX, using a
        // UTF-16 surrogate pair above the Basic Multilingual Plane.
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = index + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
        };
        writer.write_all(text)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::to_python_json;

    #[test]
    fn matches_python_json_dumps() {
        // python3 -c 'import json; print(json.dumps([["13800000000", "验证码"], {}, {"a": None, "b": 1.5, "c": True}]))'
        let value = json!([["13800000000", "验证码"], {}, {"a": null, "b": 1.5, "c": true}]);
        assert_eq!(
            to_python_json(&value),
            r#"[["13800000000", "\u9a8c\u8bc1\u7801"], {}, {"a": null, "b": 1.5, "c": true}]"#
        );
    }

    /// Found by the `pyrepr` and `task_body` fuzz targets: a float read
    /// from a message was not always written back as the same number (a
    /// retry would have changed a task's argument).
    #[test]
    fn floats_read_back_exactly() {
        for text in [
            "66666666666666666666666666666666666666666666666666660",
            "1844674407395516151615",
            "0.30000000000000004",
            "1e-320",
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let again: serde_json::Value = serde_json::from_str(&to_python_json(&value)).unwrap();
            assert_eq!(again, value, "{text}");
        }
    }

    #[test]
    fn escapes_astral_characters_and_controls_like_python() {
        // json.dumps("😀\n\x01") == '"\\ud83d\\ude00\\n\\u0001"'
        assert_eq!(to_python_json("😀\n\u{1}"), r#""\ud83d\ude00\n\u0001""#);
    }
}

//! How a message body becomes one line of output.
//!
//! pika's `print(body)` shows Python's bytes repr, `b'Hello RabbitMQ!'`. We
//! print the text itself, one message per line, so the output can be piped
//! into other tools. Two things could break that contract, and both are
//! escaped instead: bytes that are not UTF-8 (shown as `\xNN`) and control
//! characters such as a newline inside a body (shown as `\n`).

use std::{borrow::Cow, fmt::Write};

/// The body as one printable line. Never fails, whatever the bytes.
pub fn printable_body(body: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(body)
        && !text.chars().any(char::is_control)
    {
        return Cow::Borrowed(text);
    }
    let mut line = String::with_capacity(body.len() + 8);
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(line, "\\x{byte:02x}");
        }
    }
    Cow::Owned(line)
}

#[cfg(test)]
mod tests {
    use super::printable_body;

    #[test]
    fn text_is_printed_as_is() {
        assert_eq!(printable_body(b"Hello RabbitMQ!"), "Hello RabbitMQ!");
        assert_eq!(printable_body("验证码 123456".as_bytes()), "验证码 123456");
    }

    #[test]
    fn invalid_utf8_and_control_characters_are_escaped() {
        assert_eq!(printable_body(b"ok\xff\xfe!"), "ok\\xff\\xfe!");
        assert_eq!(printable_body(b"two\nlines\t"), "two\\nlines\\t");
        assert_eq!(printable_body(b""), "");
    }
}

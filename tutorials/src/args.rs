//! The scripts' command lines: `' '.join(sys.argv[1:]) or "Hello World!"`.
//!
//! The Python tutorials read `sys.argv` by hand. Ours use clap for the
//! connection flags (`--amqp-url`, `-l`), and keep the scripts' positional
//! arguments exactly: every word after the options is part of the message,
//! and a missing message falls back to the script's default.

/// The message the scripts build from their arguments: the words joined by
/// single spaces, or `default` when there are none (or they join to "").
pub fn message_or(words: &[String], default: &str) -> String {
    let message = words.join(" ");
    if message.is_empty() {
        default.to_owned()
    } else {
        message
    }
}

/// `emit_log_direct.py` and `emit_log_topic.py` split their words into a
/// routing key and a message:
///
/// ```python
/// routing_key = sys.argv[1] if len(sys.argv) > 2 else "anonymous.info"
/// message = " ".join(sys.argv[2:]) or "Hello World!"
/// ```
///
/// So a lone word is not taken as the key (it is dropped, and both defaults
/// apply); ours does the same, so the two send the same message.
pub fn key_and_message(
    words: &[String],
    default_key: &str,
    default_message: &str,
) -> (String, String) {
    let key = match words {
        [first, _, ..] => first.clone(),
        _ => default_key.to_owned(),
    };
    let rest = words.get(1..).unwrap_or_default();
    (key, message_or(rest, default_message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn joins_words_or_falls_back_like_the_scripts() {
        assert_eq!(
            message_or(&words("First message."), "Hello World!"),
            "First message."
        );
        assert_eq!(message_or(&[], "Hello World!"), "Hello World!");
        assert_eq!(message_or(&[String::new()], "x"), "x");
    }

    #[test]
    fn routing_key_rules_match_the_direct_and_topic_scripts() {
        let direct = |text| key_and_message(&words(text), "info", "Hello World!");
        assert_eq!(
            direct("error Run. Run."),
            ("error".into(), "Run. Run.".into())
        );
        assert_eq!(direct("warning"), ("info".into(), "Hello World!".into()));
        assert_eq!(direct(""), ("info".into(), "Hello World!".into()));

        let topic = |text| key_and_message(&words(text), "anonymous.info", "Hello World!");
        assert_eq!(
            topic("kern.critical A critical kernel error"),
            ("kern.critical".into(), "A critical kernel error".into())
        );
        // One word: Python keeps the default key and, from argv[2:], the default message.
        assert_eq!(
            topic("kern.critical"),
            ("anonymous.info".into(), "Hello World!".into())
        );
        assert_eq!(topic(""), ("anonymous.info".into(), "Hello World!".into()));
    }
}

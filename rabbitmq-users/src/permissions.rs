//! The three permission regexes of `set_permissions`, checked before sending,
//! and RabbitMQ's own verdict on them decoded when it refuses one.
//!
//! `rabbitmqctl set_permissions -p / admin ".*" ".*" ".*"` grants *configure*,
//! *write* and *read* on every resource whose name matches each regex. RabbitMQ
//! compiles them with Erlang's `re` module, which is PCRE. The regex crate is
//! not PCRE: it has no lookaround, backreferences or possessive quantifiers,
//! and `^(?!amq\.).*` ("everything except the amq.* names") is a common,
//! valid RabbitMQ permission it cannot parse. So the local check only refuses
//! what is malformed in *every* dialect — unbalanced groups and classes,
//! reversed ranges, a trailing backslash — and leaves the rest to RabbitMQ,
//! whose `400 invalid_regexp` answer [`server_regex_error`] turns into the same
//! kind of message.

use regex_syntax::ast::{self, parse::Parser};
use serde_json::Value;

use crate::error::UsersError;

/// What `set-permissions` grants, in rabbitmqctl's argument order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Resources the user may create and delete (queues, exchanges, bindings).
    pub configure: String,
    /// Resources the user may publish to.
    pub write: String,
    /// Resources the user may consume from.
    pub read: String,
}

impl Permissions {
    /// The blog's `".*" ".*" ".*"`: everything in the vhost.
    pub fn all() -> Self {
        Self {
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
        }
    }

    /// `(name, pattern)` in the order rabbitmqctl takes them.
    pub fn named(&self) -> [(&'static str, &str); 3] {
        [
            ("configure", &self.configure),
            ("write", &self.write),
            ("read", &self.read),
        ]
    }

    /// Refuses a pattern that is malformed in every regex dialect, before
    /// anything is sent. Anything subtler is RabbitMQ's call.
    pub fn check(&self) -> Result<(), UsersError> {
        for (permission, pattern) in self.named() {
            if let Some(reason) = malformed(pattern) {
                return Err(UsersError::InvalidRegex {
                    permission,
                    pattern: pattern.to_owned(),
                    reason,
                    judged_by: "checked before sending",
                });
            }
        }
        Ok(())
    }
}

/// Why `pattern` cannot be a valid regex in any dialect, or `None` if it may be.
fn malformed(pattern: &str) -> Option<String> {
    // The AST parser only: it reports syntax without compiling anything, so it
    // is cheap and has no size limits to trip over.
    let error = Parser::new().parse(pattern).err()?;
    let offset = error.span().start.offset;
    let certain = match error.kind() {
        ast::ErrorKind::GroupUnclosed
        | ast::ErrorKind::GroupUnopened
        | ast::ErrorKind::ClassRangeInvalid
        | ast::ErrorKind::EscapeUnexpectedEof
        | ast::ErrorKind::RepetitionCountInvalid => true,
        // The regex crate nests classes (`[a[b]]`), PCRE does not: `[a[b]` is
        // one closed class to PCRE. Only a class with no `]` at all after its
        // opening bracket is unclosed in both.
        ast::ErrorKind::ClassUnclosed => !has_closing_bracket(&pattern[offset..]),
        // Lookaround, backreferences, `\Q…\E`, possessive `a*+`, `(?>…)`:
        // PCRE features the regex crate refuses. RabbitMQ decides.
        _ => false,
    };
    certain.then(|| format!("{} at offset {offset}", error.kind()))
}

/// True if the class opening `class` (it starts with `[`) has a `]` that could
/// close it. Right after `[` or `[^`, a `]` is a literal in both dialects.
fn has_closing_bracket(class: &str) -> bool {
    let body = class.strip_prefix('[').unwrap_or(class);
    let body = body.strip_prefix('^').unwrap_or(body);
    let body = body.strip_prefix(']').unwrap_or(body);
    body.contains(']')
}

/// The regex RabbitMQ refused and why, from a `400` body such as
/// `{"error":"bad_request","reason":["invalid_regexp",[40],[[109,…],1]]}`.
///
/// The reason is an Erlang term rendered as JSON: strings arrive as lists of
/// character codes (`[40]` is `"("`, the message is `"missing )"`, `1` the
/// offset where PCRE gave up).
pub fn server_regex_error(body: &Value) -> Option<(String, String)> {
    let reason = body.get("reason")?.as_array()?;
    if reason.first()?.as_str()? != "invalid_regexp" {
        return None;
    }
    let pattern = erlang_string(reason.get(1)?)?;
    let detail = reason.get(2)?.as_array()?;
    let message = erlang_string(detail.first()?).unwrap_or_else(|| "invalid".to_owned());
    let reason = match detail.get(1).and_then(Value::as_u64) {
        Some(offset) => format!("{message} at offset {offset}"),
        None => message,
    };
    Some((pattern, reason))
}

/// An Erlang string: a JSON string, or a list of Unicode code points.
fn erlang_string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Array(codes) => codes
            .iter()
            .map(|code| {
                code.as_u64()
                    .and_then(|c| char::from_u32(u32::try_from(c).ok()?))
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(pattern: &str) -> Option<String> {
        malformed(pattern)
    }

    #[test]
    fn the_blogs_patterns_and_the_usual_ones_pass() {
        for pattern in [".*", "", "^amq\\.gen.*", "^(rabbit|celery)$", "[a-z]+"] {
            assert_eq!(verdict(pattern), None, "{pattern}");
        }
    }

    #[test]
    fn malformed_in_any_dialect_is_refused_locally() {
        for (pattern, expected) in [
            ("(", "unclosed group at offset 0"),
            ("abc)", "unopened group"),
            ("[a-", "unclosed character class"),
            ("[z-a]", "invalid character class range"),
            ("abc\\", "incomplete escape sequence"),
            ("a{3,1}", "invalid repetition count range"),
        ] {
            let reason = verdict(pattern).unwrap_or_else(|| panic!("{pattern} passed"));
            assert!(reason.contains(expected), "{pattern}: {reason}");
        }
    }

    #[test]
    fn pcre_features_the_regex_crate_lacks_are_left_to_rabbitmq() {
        // Each of these was accepted by RabbitMQ 3.10's PUT /api/permissions.
        for pattern in [
            "^(?!amq\\.).*",
            "a*+",
            "\\Q(\\E",
            "(?#comment)x",
            "a{3",
            "\\1(a)",
            "(?>a)",
            "[a[b]",
            "[]a]",
        ] {
            assert_eq!(verdict(pattern), None, "{pattern}");
        }
    }

    #[test]
    fn check_names_the_permission() {
        let permissions = Permissions {
            write: "(".to_owned(),
            ..Permissions::all()
        };
        let message = permissions.check().unwrap_err().to_string();
        assert!(
            message.starts_with("invalid write regex \"(\""),
            "{message}"
        );
        assert!(Permissions::all().check().is_ok());
    }

    #[test]
    fn decodes_rabbitmqs_invalid_regexp_answer() {
        // Captured from RabbitMQ 3.10.8 for a configure pattern of "(".
        let body: Value = serde_json::from_str(
            r#"{"error":"bad_request","reason":["invalid_regexp",[40],[[109,105,115,115,105,110,103,32,41],1]]}"#,
        )
        .unwrap();
        assert_eq!(
            server_regex_error(&body),
            Some(("(".to_owned(), "missing ) at offset 1".to_owned()))
        );
        let other: Value =
            serde_json::from_str(r#"{"error":"bad_request","reason":"vhost_or_user_not_found"}"#)
                .unwrap();
        assert_eq!(server_regex_error(&other), None);
    }
}

//! A canvas written on one line, the way Celery's docs write it, for the
//! `send --canvas` command and for tests:
//!
//! | written | Python | means |
//! |---|---|---|
//! | `add(2, 2)` or `add.s(2, 2)` | `add.s(2, 2)` | one task |
//! | `add.si(2, 2)` | `add.si(2, 2)` | one task that ignores its parent's result |
//! | `add(2, 2) \| mul(8)` | `add.s(2, 2) \| mul.s(8)` | a chain |
//! | `[add(1, 1), add(2, 2)]` | `group(add.s(1, 1), add.s(2, 2))` | a group |
//! | `[add(1, 1), add(2, 2)] \| xsum()` | `chord([…], xsum.s())` | a chord: a group followed by a step |
//!
//! Arguments are JSON values (`"text"`, `[1, 2]`, `{"a": 1}`, `null`) or
//! `name=value` keyword arguments. Parsing is pure: a mistake is an error
//! that says where, never a panic.

use serde_json::{Map, Value};
use thiserror::Error;

use super::signature::Signature;

/// Where and why an expression could not be read.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("canvas expression, at character {at}: {problem}")]
pub struct ExpressionError {
    /// 1-based character position.
    pub at: usize,
    pub problem: String,
}

/// How deep brackets may nest.
const MAX_NESTING: usize = 16;

/// Reads a canvas expression into the signature that applies it.
pub fn parse(text: &str) -> Result<Signature, ExpressionError> {
    let mut parser = Parser { text, at: 0 };
    let signature = parser.chain(0)?;
    parser.skip_spaces();
    if parser.at < text.len() {
        return Err(parser.error("unexpected text after the end (join steps with '|')"));
    }
    Ok(signature)
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.at..).unwrap_or_default()
    }

    fn error(&self, problem: impl Into<String>) -> ExpressionError {
        let at = self
            .text
            .get(..self.at)
            .map_or(0, |done| done.chars().count())
            + 1;
        ExpressionError {
            at,
            problem: problem.into(),
        }
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    /// Consumes `token` if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    /// `stage ('|' stage)*`, a group followed by a step becoming a chord.
    fn chain(&mut self, depth: usize) -> Result<Signature, ExpressionError> {
        if depth > MAX_NESTING {
            return Err(self.error(format!("nested deeper than {MAX_NESTING} levels")));
        }
        let mut steps = vec![self.stage(depth)?];
        while self.eat("|") {
            let next = self.stage(depth)?;
            match steps.pop() {
                Some(group) if group.subtask_type.as_deref() == Some("group") => {
                    steps.push(chord(group, next));
                }
                Some(previous) => steps.extend([previous, next]),
                None => steps.push(next),
            }
        }
        Ok(match steps.len() {
            1 => steps.remove(0),
            _ => compound("celery.chain", "chain", [("tasks", list(steps))]),
        })
    }

    /// A call, or a bracketed group.
    fn stage(&mut self, depth: usize) -> Result<Signature, ExpressionError> {
        if self.eat("[") {
            let mut members = Vec::new();
            if !self.eat("]") {
                loop {
                    members.push(self.chain(depth + 1)?);
                    if self.eat("]") {
                        break;
                    }
                    if !self.eat(",") {
                        return Err(self.error("expected ',' or ']' in a group"));
                    }
                }
            }
            return Ok(compound(
                "celery.group",
                "group",
                [("tasks", list(members))],
            ));
        }
        self.call()
    }

    /// `name(args)`, `name.s(args)` or `name.si(args)`.
    fn call(&mut self) -> Result<Signature, ExpressionError> {
        self.skip_spaces();
        let name_length = self
            .rest()
            .find(|c: char| c == '(' || c.is_whitespace())
            .unwrap_or(self.rest().len());
        let mut name = &self.rest()[..name_length];
        let mut immutable = false;
        if let Some(task) = name.strip_suffix(".si") {
            (name, immutable) = (task, true);
        } else if let Some(task) = name.strip_suffix(".s") {
            name = task;
        }
        if name.is_empty() || name.contains(['|', '[', ']', ',', ')']) {
            return Err(self.error("expected a task call such as add(2, 2)"));
        }
        let name = name.to_owned();
        self.at += name_length;
        if !self.eat("(") {
            return Err(self.error(format!("expected '(' after the task name '{name}'")));
        }
        let (args, kwargs) = self.arguments()?;
        let mut signature = Signature::new(&name, args);
        signature.kwargs = kwargs;
        signature.immutable = immutable;
        Ok(signature)
    }

    /// `value, …, name=value, …)`.
    fn arguments(&mut self) -> Result<(Vec<Value>, Map<String, Value>), ExpressionError> {
        let (mut args, mut kwargs) = (Vec::new(), Map::new());
        if self.eat(")") {
            return Ok((args, kwargs));
        }
        loop {
            self.skip_spaces();
            let keyword = self.keyword();
            let value = self.json_value()?;
            match keyword {
                Some(name) => {
                    kwargs.insert(name, value);
                }
                None if !kwargs.is_empty() => {
                    return Err(self.error("a positional argument after a keyword argument"));
                }
                None => args.push(value),
            }
            if self.eat(")") {
                return Ok((args, kwargs));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ')' after an argument"));
            }
        }
    }

    /// `name=` in front of a keyword argument, consumed if present.
    fn keyword(&mut self) -> Option<String> {
        let rest = self.rest();
        let length = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let after = rest[length..].trim_start();
        if length > 0 && after.starts_with('=') {
            let name = rest[..length].to_owned();
            self.at += rest.len() - after.len() + 1;
            self.skip_spaces();
            Some(name)
        } else {
            None
        }
    }

    /// One argument's JSON, up to the ',' or ')' that ends it.
    fn json_value(&mut self) -> Result<Value, ExpressionError> {
        let rest = self.rest();
        let length = argument_length(rest);
        match serde_json::from_str(rest[..length].trim_end()) {
            Ok(value) => {
                self.at += length;
                Ok(value)
            }
            Err(_) => Err(self.error(
                "expected a JSON value as argument (numbers, \"double-quoted strings\", [lists], {objects}, true, false, null)",
            )),
        }
    }
}

/// Bytes up to the first ',' or ')' outside brackets and strings.
fn argument_length(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            _ if in_string => {}
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' | ')' if depth == 0 => return at,
            _ => {}
        }
    }
    text.len()
}

fn list(signatures: Vec<Signature>) -> Value {
    Value::Array(signatures.iter().map(Signature::to_value).collect())
}

fn compound<const N: usize>(task: &str, kind: &str, parts: [(&str, Value); N]) -> Signature {
    let mut signature = Signature::new(task, Vec::new());
    signature.subtask_type = Some(kind.to_owned());
    for (name, value) in parts {
        signature.kwargs.insert(name.to_owned(), value);
    }
    signature
}

/// `chord(header, body)`: the group's members are the header.
fn chord(group: Signature, body: Signature) -> Signature {
    let header = group.to_value();
    compound(
        "celery.chord",
        "chord",
        [("header", header), ("body", body.to_value())],
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canvas::Shape;

    #[test]
    fn reads_tasks_chains_groups_and_chords() {
        let add = parse(r#"add.s(2, 2)"#).unwrap();
        assert_eq!(add, Signature::new("add", vec![json!(2), json!(2)]));
        let immutable = parse("add.si(0, 0)").unwrap();
        assert!(immutable.immutable);
        let kwargs = parse(r#"send_sms_code("13800000000", sms_code="1234")"#).unwrap();
        assert_eq!(kwargs.args, vec![json!("13800000000")]);
        assert_eq!(kwargs.kwargs.get("sms_code"), Some(&json!("1234")));

        let shape = |text| parse(text).unwrap().shape().unwrap();
        let Shape::Chain(steps) = shape("add(2, 2) | mul(8) | add(1)") else {
            panic!("not a chain")
        };
        assert_eq!(steps.len(), 3);
        let Shape::Group(members) = shape("[add(1, 1), add(2,2) | mul(3)]") else {
            panic!("not a group")
        };
        assert!(matches!(members[1].shape(), Ok(Shape::Chain(_))));
        let Shape::Chain(steps) = shape("add(1, 1) | [add(1), add(2)] | xsum() | mul(3)") else {
            panic!("not a chain")
        };
        assert_eq!(steps.len(), 3);
        let Ok(Shape::Chord { header, body, .. }) = steps[1].shape() else {
            panic!("a group followed by a step is a chord: {:?}", steps[1])
        };
        assert_eq!((header.len(), body.task.as_str()), (2, "xsum"));
    }

    #[test]
    fn mistakes_say_where() {
        for (text, at) in [
            ("", 1),
            ("add(2, 2", 9),
            ("add(2, 'x')", 8),
            ("add(x=1, 2)", 11),
            ("add(1) mul(2)", 8),
            ("[add(1), ", 10),
            ("add 2", 5),
            ("| add(1)", 1),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.at, at, "{text}: {error}");
        }
        let deep = format!("{}add(1){}", "[".repeat(40), "]".repeat(40));
        assert!(parse(&deep).unwrap_err().problem.contains("nested"));
    }
}

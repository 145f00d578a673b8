//! A signature: one task call written down to be made later — Celery's
//! `add.s(2, 2)`, and the dict it travels as inside a message's `embed`
//! (`celery-canvas-control-events.md` §1.2):
//!
//! ```json
//! {"task": "add", "args": [2, 2], "kwargs": {}, "options": {"task_id": "…"},
//!  "subtask_type": null, "immutable": false}
//! ```
//!
//! `subtask_type` says what the dict stands for: a plain task (`null`), a
//! `chain`, a `group` or a `chord`, whose parts sit in `kwargs`
//! (`tasks`, or `header` and `body`). [`Signature::shape`] reads that once
//! into a [`Shape`], so the code that applies it matches on a type, not on
//! strings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// A signature that cannot be applied, phrased for the worker's log.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CanvasError {
    #[error("a canvas signature must be an object with a 'task' name, got {0}")]
    NotASignature(String),
    #[error("a '{kind}' signature needs kwargs.{field} (a list of signatures)")]
    MissingParts {
        kind: &'static str,
        field: &'static str,
    },
    #[error("canvas nested deeper than {0} levels")]
    TooDeep(usize),
    /// `self.replace(…)` with a signature Celery refuses (it raises
    /// `ImproperlyConfigured` with these words).
    #[error("{0}")]
    CannotReplace(&'static str),
}

/// One signature, field order as Celery writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub task: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kwargs: Map<String, Value>,
    /// `apply_async`'s options: `task_id`, `group_id`, `link`, `chain`, …
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
    #[serde(default)]
    pub subtask_type: Option<String>,
    /// `add.si(…)`: the parent's result is not prepended.
    #[serde(default, deserialize_with = "null_as_default")]
    pub immutable: bool,
}

/// What a signature stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// One task message.
    Task,
    /// Run one after the other, each getting the previous result.
    Chain(Vec<Signature>),
    /// Run side by side.
    Group(Vec<Signature>),
    /// Run `header` side by side, then `body` with the list of their results.
    Chord {
        header: Vec<Signature>,
        /// The id the header group shares (`header.options.task_id`), if set.
        group_id: Option<String>,
        body: Box<Signature>,
    },
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Signature {
    /// A plain task signature: `add.s(2, 2)`.
    pub fn new(task: &str, args: Vec<Value>) -> Signature {
        Signature {
            task: task.to_owned(),
            args,
            kwargs: Map::new(),
            options: Map::new(),
            subtask_type: None,
            immutable: false,
        }
    }

    /// Celery's `chain(a, b, c)` (`a | b | c`): each step gets the
    /// previous one's result in front of its own arguments.
    pub fn chain(steps: Vec<Signature>) -> Signature {
        Signature::of_parts("celery.chain", "chain", steps)
    }

    /// Celery's `group(a, b, c)`: run side by side.
    pub fn group(members: Vec<Signature>) -> Signature {
        Signature::of_parts("celery.group", "group", members)
    }

    /// Celery's `chord(header, body)`: `body` gets the list of the
    /// header's results. The header travels as a group signature, as
    /// Celery 5 sends it.
    pub fn chord(header: Vec<Signature>, body: Signature) -> Signature {
        let mut chord = Signature::new("celery.chord", Vec::new());
        chord.subtask_type = Some("chord".to_owned());
        let header = Signature::group(header).to_value();
        chord.kwargs.insert("header".to_owned(), header);
        chord.kwargs.insert("body".to_owned(), body.to_value());
        chord
    }

    fn of_parts(task: &str, kind: &str, parts: Vec<Signature>) -> Signature {
        let mut signature = Signature::new(task, Vec::new());
        signature.subtask_type = Some(kind.to_owned());
        let parts = parts.iter().map(Signature::to_value).collect();
        signature
            .kwargs
            .insert("tasks".to_owned(), Value::Array(parts));
        signature
    }

    /// With keyword argument `name` set: `add.s(2, y=3)`.
    pub fn with_kwarg(mut self, name: &str, value: impl Into<Value>) -> Signature {
        self.kwargs.insert(name.to_owned(), value.into());
        self
    }

    /// Celery's `.si(…)`: the parent's result is not put in front.
    pub fn immutable(mut self) -> Signature {
        self.immutable = true;
        self
    }

    /// Celery's `.set(name=value)`: an `apply_async` option
    /// (`queue`, `countdown`, `priority`, …).
    pub fn with_option(mut self, name: &str, value: impl Into<Value>) -> Signature {
        self.set_option(name, value.into());
        self
    }

    /// Celery's `.link(callback)`: sent with this one's result once it succeeds.
    pub fn link(self, callback: Signature) -> Signature {
        self.append_to("link", callback)
    }

    /// Celery's `.link_error(errback)`: sent if this one fails.
    pub fn link_error(self, errback: Signature) -> Signature {
        self.append_to("link_error", errback)
    }

    fn append_to(mut self, option: &str, signature: Signature) -> Signature {
        let mut list = Signature::list_values(self.options.get(option));
        list.push(signature.to_value());
        self.set_option(option, Value::Array(list));
        self
    }

    /// Reads one from a message's JSON.
    pub fn from_value(value: &Value) -> Result<Signature, CanvasError> {
        serde_json::from_value(value.clone()).map_err(|error| {
            let shown = crate::protocol::pyrepr::abbreviate(&value.to_string(), 200);
            CanvasError::NotASignature(format!("{shown} ({error})"))
        })
    }

    /// Reads a list of signatures (`link`, `chain`, `tasks`); `null` and a
    /// missing value are the empty list, and a single signature is a list of one.
    pub fn list_from(value: Option<&Value>) -> Result<Vec<Signature>, CanvasError> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(Signature::from_value).collect(),
            Some(single) => Ok(vec![Signature::from_value(single)?]),
        }
    }

    /// A list option as JSON values: `null` and a missing value are empty,
    /// a single value is a list of one.
    pub fn list_values(value: Option<&Value>) -> Vec<Value> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(single) => vec![single.clone()],
        }
    }

    /// As JSON, for a message's embed or another signature's options.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// What it stands for, from `subtask_type` and its parts.
    pub fn shape(&self) -> Result<Shape, CanvasError> {
        let parts = |kind: &'static str, field: &'static str| match self.kwargs.get(field) {
            Some(value @ Value::Array(_)) => Signature::list_from(Some(value)),
            _ => Err(CanvasError::MissingParts { kind, field }),
        };
        match self.subtask_type.as_deref() {
            Some("chain") => Ok(Shape::Chain(parts("chain", "tasks")?)),
            Some("group") => Ok(Shape::Group(parts("group", "tasks")?)),
            Some("chord") => {
                let header_value = self.kwargs.get("header");
                // The header is a group signature, or (older Celery) a bare list.
                let (header, group_id) = match header_value {
                    Some(Value::Array(_)) => (Signature::list_from(header_value)?, None),
                    Some(value @ Value::Object(_)) => {
                        let group = Signature::from_value(value)?;
                        let group_id = group.option_str("task_id").map(str::to_owned);
                        match group.shape()? {
                            Shape::Group(tasks) => (tasks, group_id),
                            _ => (vec![group], group_id),
                        }
                    }
                    _ => {
                        return Err(CanvasError::MissingParts {
                            kind: "chord",
                            field: "header",
                        });
                    }
                };
                let body = self
                    .kwargs
                    .get("body")
                    .ok_or(CanvasError::MissingParts {
                        kind: "chord",
                        field: "body",
                    })
                    .and_then(Signature::from_value)?;
                Ok(Shape::Chord {
                    header,
                    group_id,
                    body: Box::new(body),
                })
            }
            _ => Ok(Shape::Task),
        }
    }

    /// A string option (`task_id`, `group_id`, `queue`, …).
    pub fn option_str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(Value::as_str)
    }

    /// The id the call will have: `options.task_id` (Celery freezes a
    /// canvas before sending it, so every step's id is known in advance).
    pub fn id(&self) -> Option<&str> {
        self.option_str("task_id")
    }

    /// Gives the signature an id if it has none yet, and returns it.
    pub fn freeze(&mut self) -> String {
        match self.id() {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                self.options
                    .insert("task_id".to_owned(), Value::String(id.clone()));
                id
            }
        }
    }

    /// Celery's `Signature._merge` for a call with `args` in front: the
    /// parent's result goes first, unless the signature is immutable.
    pub fn with_args_in_front(mut self, front: &[Value]) -> Signature {
        if !self.immutable && !front.is_empty() {
            let mut args = front.to_vec();
            args.append(&mut self.args);
            self.args = args;
        }
        self
    }

    /// Sets an option, replacing what was there.
    pub fn set_option(&mut self, name: &str, value: Value) {
        self.options.insert(name.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_signatures_python_sends() {
        // From a real Celery 5.7: `add.apply_async((1, 2), link=mul.s(3), link_error=add.si(0, 0))`.
        let callbacks = json!([{"task": "mul", "args": [3], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}]);
        let errbacks = json!([{"task": "add", "args": [0, 0], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": true}]);
        let link = Signature::list_from(Some(&callbacks)).unwrap();
        assert_eq!(link, vec![Signature::new("mul", vec![json!(3)])]);
        assert_eq!(link[0].shape().unwrap(), Shape::Task);
        let link_error = Signature::list_from(Some(&errbacks)).unwrap();
        assert!(link_error[0].immutable);
        // The parent's result goes in front, unless immutable.
        assert_eq!(
            link[0].clone().with_args_in_front(&[json!(3)]).args,
            vec![json!(3), json!(3)]
        );
        assert_eq!(
            link_error[0]
                .clone()
                .with_args_in_front(&[json!("id")])
                .args,
            vec![json!(0), json!(0)]
        );
        // And it writes back as it came.
        assert_eq!(link[0].to_value(), callbacks[0]);
    }

    #[test]
    fn reads_a_chord_inside_a_chain() {
        // The element Celery 5.7 puts in `chain` for `chain(add.s(1, 1), group(add.s(1), add.s(2)), xsum.s())`.
        let step = json!({"task": "celery.chord", "args": [], "kwargs": {"kwargs": {}, "header": {"task": "celery.group", "args": [], "kwargs": {"tasks": [{"task": "add", "args": [1], "kwargs": {}, "options": {"task_id": "h0", "group_index": 0}, "subtask_type": null, "immutable": false}, {"task": "add", "args": [2], "kwargs": {}, "options": {"task_id": "h1", "group_index": 1}, "subtask_type": null, "immutable": false}]}, "options": {"task_id": "gid", "root_id": null, "parent_id": null}, "subtask_type": "group", "immutable": false}, "body": {"task": "xsum", "args": [], "kwargs": {}, "options": {"task_id": "body"}, "subtask_type": null, "immutable": false}}, "options": {"task_id": "gid"}, "subtask_type": "chord", "immutable": false});
        let Shape::Chord {
            header,
            group_id,
            body,
        } = Signature::from_value(&step).unwrap().shape().unwrap()
        else {
            panic!("not a chord");
        };
        assert_eq!(header.len(), 2);
        assert_eq!(header[1].id(), Some("h1"));
        assert_eq!(group_id.as_deref(), Some("gid"));
        assert_eq!(body.id(), Some("body"));
    }

    #[test]
    fn bad_signatures_are_errors() {
        for value in [json!(3), json!({"args": []}), json!({"task": 5})] {
            assert!(Signature::from_value(&value).is_err(), "{value}");
        }
        let group = json!({"task": "celery.group", "subtask_type": "group", "kwargs": {}});
        assert_eq!(
            Signature::from_value(&group).unwrap().shape(),
            Err(CanvasError::MissingParts {
                kind: "group",
                field: "tasks"
            })
        );
        // Nulls where lists belong are read as empty, as Python would.
        let sparse = json!({"task": "noop", "args": null, "kwargs": null, "options": null, "immutable": null});
        assert_eq!(
            Signature::from_value(&sparse).unwrap(),
            Signature::new("noop", vec![])
        );
    }
}

//! Celery's `self.replace(signature)`: a running task hands its place to a
//! new signature and ends without a result of its own (Celery raises
//! `Ignore`). Whoever waits on the task's id gets the replacement's result.
//!
//! What the replacement takes over, as Celery 5.7's `Task.replace` does:
//! * the task's **id**, given to the task whose result stands for the
//!   replacement (a chain's last step, a chord's body);
//! * its **callbacks** and **errbacks**;
//! * its place in a **group** or a **chord's header** (`group_id`,
//!   `group_index`, the chord body), so the chord still counts it;
//! * the rest of its **chain**, which runs after the replacement;
//! * `replaced_task_nesting`, one more than the task's.
//!
//! A group cannot take an id, so it is made a chord whose body is Celery's
//! built-in `celery.accumulate` (the list of the group's results).
//!
//! Pure: the message and the signature in, the messages to send out. The
//! worker sends them (`worker/execute.rs`).

use serde_json::{Value, json};

use super::{
    apply::{Lineage, Plan, apply},
    signature::{CanvasError, Shape, Signature},
};
use crate::protocol::TaskMessage;

/// The built-in task a group replacing a task is chorded onto.
pub const ACCUMULATE: &str = "celery.accumulate";

/// The messages that replace the task of `message` with `signature`.
pub fn replace(message: &TaskMessage, signature: Signature) -> Result<Plan, CanvasError> {
    if signature.options.contains_key("chord") {
        return Err(CanvasError::CannotReplace(
            "A signature replacing a task must not be part of a chord",
        ));
    }
    let mut replacement = match signature.shape()? {
        Shape::Chain(steps) if steps.is_empty() => {
            return Err(CanvasError::CannotReplace(
                "Cannot replace with an empty chain",
            ));
        }
        Shape::Group(_) => accumulated(signature),
        Shape::Chain(mut steps) => {
            if let Some(last) = steps.pop() {
                let last = match last.shape()? {
                    Shape::Group(_) => accumulated(last),
                    _ => last,
                };
                steps.push(last);
            }
            let options = signature.options;
            let mut chain = Signature::chain(steps);
            chain.options = options;
            chain
        }
        Shape::Task | Shape::Chord { .. } => signature,
    };

    let headers = &message.headers;
    let nesting = headers.replaced_task_nesting.saturating_add(1);
    let chord = (!message.embed.chord.is_null()).then(|| message.embed.chord.clone());
    on_final_task(&mut replacement, 0, &mut |last| {
        last.set_option("task_id", Value::String(headers.id.clone()));
        for callback in Signature::list_values(Some(&message.embed.callbacks)) {
            append(last, "link", callback);
        }
        for errback in Signature::list_values(Some(&message.embed.errbacks)) {
            append(last, "link_error", errback);
        }
        if let Some(group) = &headers.group {
            last.set_option("group_id", Value::String(group.clone()));
        }
        if let Some(index) = headers.group_index {
            last.set_option("group_index", json!(index));
        }
        if let Some(chord) = &chord {
            last.set_option("chord", chord.clone());
        }
    })?;
    set_everywhere(&mut replacement, "replaced_task_nesting", json!(nesting), 0)?;

    // The rest of the task's chain follows the replacement (already
    // reversed, as a chain travels).
    let rest: Vec<Value> = Signature::list_values(Some(&message.embed.chain))
        .into_iter()
        .map(|step| match Signature::from_value(&step) {
            Ok(mut step) => {
                step.set_option("replaced_task_nesting", json!(nesting));
                step.to_value()
            }
            Err(_) => step,
        })
        .collect();
    if !rest.is_empty() {
        let mut chain = Signature::list_values(replacement.options.get("chain"));
        chain.extend(rest);
        replacement.set_option("chain", Value::Array(chain));
    }

    // Sent from inside the task: it is their parent, its root is theirs.
    apply(replacement, &[], &Lineage::after(message))
}

/// `group | celery.accumulate.s(index=0)`: Celery's chord over a group
/// (the group's own options stay on its header).
fn accumulated(group: Signature) -> Signature {
    let body = Signature::new(ACCUMULATE, Vec::new()).with_kwarg("index", 0);
    let mut chord = Signature::new("celery.chord", Vec::new());
    chord.subtask_type = Some("chord".to_owned());
    chord.kwargs.insert("header".to_owned(), group.to_value());
    chord.kwargs.insert("body".to_owned(), body.to_value());
    chord
}

/// Calls `change` on the task whose result stands for `signature`: itself,
/// a chain's last step, a chord's body.
fn on_final_task(
    signature: &mut Signature,
    depth: usize,
    change: &mut dyn FnMut(&mut Signature),
) -> Result<(), CanvasError> {
    if depth > super::apply::MAX_DEPTH {
        return Err(CanvasError::TooDeep(super::apply::MAX_DEPTH));
    }
    match signature.shape()? {
        Shape::Task | Shape::Group(_) => change(signature),
        Shape::Chain(mut steps) => {
            if let Some(last) = steps.last_mut() {
                on_final_task(last, depth + 1, change)?;
            }
            let steps = steps.iter().map(Signature::to_value).collect();
            signature
                .kwargs
                .insert("tasks".to_owned(), Value::Array(steps));
        }
        Shape::Chord { mut body, .. } => {
            on_final_task(&mut body, depth + 1, change)?;
            signature.kwargs.insert("body".to_owned(), body.to_value());
        }
    }
    Ok(())
}

/// Sets option `name` on every task of `signature`.
fn set_everywhere(
    signature: &mut Signature,
    name: &str,
    value: Value,
    depth: usize,
) -> Result<(), CanvasError> {
    if depth > super::apply::MAX_DEPTH {
        return Err(CanvasError::TooDeep(super::apply::MAX_DEPTH));
    }
    let each = |parts: Vec<Signature>| -> Result<Value, CanvasError> {
        let mut values = Vec::with_capacity(parts.len());
        for mut part in parts {
            set_everywhere(&mut part, name, value.clone(), depth + 1)?;
            values.push(part.to_value());
        }
        Ok(Value::Array(values))
    };
    match signature.shape()? {
        Shape::Task => signature.set_option(name, value),
        Shape::Chain(steps) | Shape::Group(steps) => {
            let tasks = each(steps)?;
            signature.kwargs.insert("tasks".to_owned(), tasks);
        }
        Shape::Chord { header, body, .. } => {
            let tasks = each(header)?;
            match signature.kwargs.get_mut("header") {
                Some(Value::Object(group)) => {
                    if let Some(Value::Object(kwargs)) = group.get_mut("kwargs") {
                        kwargs.insert("tasks".to_owned(), tasks);
                    }
                }
                _ => {
                    signature.kwargs.insert("header".to_owned(), tasks);
                }
            }
            let mut body = *body;
            set_everywhere(&mut body, name, value, depth + 1)?;
            signature.kwargs.insert("body".to_owned(), body.to_value());
        }
    }
    Ok(())
}

fn append(signature: &mut Signature, option: &str, value: Value) {
    let mut list = Signature::list_values(signature.options.get(option));
    list.push(value);
    signature.set_option(option, Value::Array(list));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::{SendOptions, TaskMessage};

    fn running(name: &str) -> TaskMessage {
        let mut message =
            TaskMessage::new(name, vec![], Default::default(), &SendOptions::default());
        message.headers.id = "replaced-id".into();
        message.headers.root_id = Some("root-id".into());
        message
    }

    fn add(x: i64, y: i64) -> Signature {
        Signature::new("add", vec![json!(x), json!(y)])
    }

    #[test]
    fn a_task_replaced_by_a_task_keeps_its_id_and_root_and_is_its_parent() {
        let plan = replace(&running("add_replaced"), add(42, 1337)).unwrap();
        assert_eq!(plan.messages.len(), 1);
        let headers = &plan.messages[0].message.headers;
        assert_eq!(headers.task, "add");
        assert_eq!(headers.id, "replaced-id");
        assert_eq!(headers.root_id.as_deref(), Some("root-id"));
        assert_eq!(headers.parent_id.as_deref(), Some("replaced-id"));
        assert_eq!(headers.replaced_task_nesting, 1);
    }

    #[test]
    fn a_chain_replacing_a_task_gives_its_last_step_the_id_and_the_callbacks() {
        let mut message = running("replace_with_chain");
        message.embed.callbacks = json!([Signature::new("redis_echo", vec![]).to_value()]);
        message.headers.replaced_task_nesting = 2;
        let chain = Signature::chain(vec![add(1, 2), Signature::new("identity", vec![])]);
        let plan = replace(&message, chain).unwrap();
        // Only the first step is sent; the rest travels in its chain.
        assert_eq!(plan.messages.len(), 1);
        let first = &plan.messages[0].message;
        assert_eq!(first.headers.task, "add");
        assert_ne!(first.headers.id, "replaced-id");
        assert_eq!(first.headers.replaced_task_nesting, 3);
        let rest = Signature::list_from(Some(&first.embed.chain)).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].task, "identity");
        assert_eq!(rest[0].id(), Some("replaced-id"));
        assert_eq!(rest[0].options["link"][0]["task"], "redis_echo");
    }

    #[test]
    fn the_rest_of_the_replaced_tasks_chain_runs_after_the_replacement() {
        let mut message = running("add_replaced");
        // Reversed: `mul` runs next, then `tsum`.
        message.embed.chain = json!([
            Signature::new("tsum", vec![]).to_value(),
            Signature::new("mul", vec![json!(2)]).to_value()
        ]);
        let plan = replace(&message, add(1, 1)).unwrap();
        let sent = &plan.messages[0].message;
        assert_eq!(sent.headers.id, "replaced-id");
        let rest = Signature::list_from(Some(&sent.embed.chain)).unwrap();
        let names: Vec<_> = rest.iter().map(|step| step.task.as_str()).collect();
        assert_eq!(names, ["tsum", "mul"]);
        assert_eq!(rest[1].options["replaced_task_nesting"], json!(1));
    }

    #[test]
    fn a_chord_header_task_keeps_its_place_in_the_chord() {
        let mut message = running("add_replaced");
        message.headers.group = Some("group-id".into());
        message.headers.group_index = Some(1);
        message.embed.chord = Signature::new("tsum", vec![]).to_value();
        let plan = replace(&message, add(2, 2)).unwrap();
        let sent = &plan.messages[0].message;
        assert_eq!(sent.headers.group.as_deref(), Some("group-id"));
        assert_eq!(sent.headers.group_index, Some(1));
        assert_eq!(sent.embed.chord["task"], "tsum");
        // The chord was counted when it was sent: no new size.
        assert!(plan.chord_sizes.is_empty());
    }

    #[test]
    fn a_group_becomes_a_chord_onto_celery_accumulate_which_takes_the_id() {
        let group = Signature::group(vec![add(2, 1), add(1, 1)]);
        let plan = replace(&running("add_to_all"), group).unwrap();
        assert_eq!(plan.messages.len(), 2);
        assert_eq!(plan.chord_sizes.len(), 1);
        let body = Signature::from_value(&plan.messages[0].message.embed.chord).unwrap();
        assert_eq!(body.task, ACCUMULATE);
        assert_eq!(body.kwargs["index"], json!(0));
        assert_eq!(body.id(), Some("replaced-id"));
    }

    #[test]
    fn celery_refuses_what_it_refuses() {
        let empty = Signature::chain(vec![]);
        assert_eq!(
            replace(&running("t"), empty).unwrap_err().to_string(),
            "Cannot replace with an empty chain"
        );
        let in_chord = add(1, 1).with_option("chord", json!({}));
        assert_eq!(
            replace(&running("t"), in_chord).unwrap_err().to_string(),
            "A signature replacing a task must not be part of a chord"
        );
    }
}

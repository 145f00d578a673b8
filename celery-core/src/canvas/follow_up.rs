//! What a finished task sets off, decided from its message alone (pure, so
//! each rule is unit-tested). The worker carries it out in the order Celery
//! does (`celery-canvas-control-events.md` §1.3, §1.4):
//!
//! * **success**: callbacks (`link`), then the chain's next step — both sent
//!   *before* the result is stored, so a client that sees SUCCESS can
//!   already follow `children` — then the result, then the chord count;
//! * **failure**: the FAILURE, the chord count, then every step still ahead
//!   in the chain is marked FAILURE with the same exception (so `get()` on
//!   the chain's last result does not wait forever), then the errbacks are
//!   sent with the failed task's id as their argument.

use std::slice;

use serde_json::Value;

use super::{
    apply::{Lineage, Plan, apply},
    signature::{CanvasError, Shape, Signature},
};
use crate::protocol::TaskMessage;

/// The messages a successful task sends on: its callbacks, each with the
/// result in front, and the next step of its chain.
pub fn after_success(message: &TaskMessage, result: &Value) -> Result<Plan, CanvasError> {
    let lineage = Lineage::after(message);
    let mut plan = Plan::default();
    for callback in Signature::list_from(Some(&message.embed.callbacks))? {
        plan.extend(apply(callback, slice::from_ref(result), &lineage)?);
    }
    let mut chain = Signature::list_from(Some(&message.embed.chain))?;
    // The chain is stored reversed: the next step is the last element.
    if let Some(mut next) = chain.pop() {
        let rest = chain.iter().map(Signature::to_value).collect();
        next.set_option("chain", Value::Array(rest));
        plan.extend(apply(next, slice::from_ref(result), &lineage)?);
    }
    Ok(plan)
}

/// A task that will never run because a step before it failed: it gets
/// the same FAILURE, and counts as a failed part of its chord, if in one.
#[derive(Debug, Clone, PartialEq)]
pub struct Doomed {
    pub task_id: String,
    pub group_id: Option<String>,
    pub group_index: Option<i64>,
    /// The chord body it would have counted towards.
    pub chord: Option<Value>,
    /// It fails with the exception of the chord header task that failed,
    /// not the `ChordError`: a group body and its tasks (Celery 5.7's
    /// `_handle_group_chord_error`).
    pub with_cause: bool,
}

/// What a failed task sets off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AfterFailure {
    pub doomed: Vec<Doomed>,
    /// The errbacks, each with the failed task's id in front.
    pub errbacks: Plan,
}

/// What a failed task sets off: its chain's remaining steps doomed, its
/// errbacks sent.
pub fn after_failure(message: &TaskMessage) -> Result<AfterFailure, CanvasError> {
    let chain = Signature::list_from(Some(&message.embed.chain))?;
    let errbacks = Signature::list_from(Some(&message.embed.errbacks))?;
    failed(
        &message.headers.id,
        &Lineage::after(message),
        chain,
        errbacks,
    )
}

/// What a chord body that can no longer run sets off (Celery's
/// `chord_error_from_stack`): the body itself is doomed, then its chain,
/// and its errbacks are sent with the body's id.
///
/// A group as the body (Celery's `_handle_group_chord_error`): the group
/// and each of its tasks fail with the header task's own exception (or
/// `GroupResult.get()` would wait for ever), and each task's errbacks are
/// sent with its id: its own, then the group's, each once.
pub fn after_chord_failure(
    body: &Signature,
    lineage: &Lineage,
) -> Result<AfterFailure, CanvasError> {
    let mut body = body.clone();
    let body_id = body.freeze();
    let chain = Signature::list_from(body.options.get("chain"))?;
    let errbacks = Signature::list_from(body.options.get("link_error"))?;
    let Ok(Shape::Group(members)) = body.shape() else {
        let mut after = failed(&body_id, lineage, chain, errbacks)?;
        after.doomed.insert(0, doomed(&body));
        return Ok(after);
    };
    let mut after = failed(&body_id, lineage, chain, Vec::new())?;
    after.doomed.insert(
        0,
        Doomed {
            with_cause: true,
            ..doomed(&body)
        },
    );
    for member in members {
        let (Some(member_id), mut member_errbacks) = result_errbacks(&member, 0)? else {
            continue;
        };
        for errback in &errbacks {
            if !member_errbacks.contains(errback) {
                member_errbacks.push(errback.clone());
            }
        }
        let member_after = failed(&member_id, lineage, Vec::new(), member_errbacks)?;
        after.doomed.push(Doomed {
            task_id: member_id,
            with_cause: true,
            ..doomed(&member)
        });
        after.errbacks.extend(member_after.errbacks);
    }
    Ok(after)
}

/// The id of the result that stands for `signature`, and the errbacks
/// linked to it (Celery's `_result_errbacks`): a chord's result is its
/// body's, which its errbacks go to; a group gathers its tasks' errbacks
/// with its own; a chain's result is its last step's.
fn result_errbacks(
    signature: &Signature,
    depth: usize,
) -> Result<(Option<String>, Vec<Signature>), CanvasError> {
    if depth > super::apply::MAX_DEPTH {
        return Err(CanvasError::TooDeep(super::apply::MAX_DEPTH));
    }
    let mut errbacks = Signature::list_from(signature.options.get("link_error"))?;
    match signature.shape()? {
        Shape::Chord { body, .. } => {
            let (id, more) = result_errbacks(&body, depth + 1)?;
            errbacks.extend(more);
            Ok((id, errbacks))
        }
        Shape::Group(tasks) => {
            for task in &tasks {
                errbacks.extend(result_errbacks(task, depth + 1)?.1);
            }
            Ok((signature.id().map(str::to_owned), errbacks))
        }
        Shape::Chain(steps) => {
            let id = match (signature.id(), steps.last()) {
                (Some(id), _) => Some(id.to_owned()),
                (None, Some(last)) => result_errbacks(last, depth + 1)?.0,
                (None, None) => None,
            };
            Ok((id, errbacks))
        }
        Shape::Task => Ok((signature.id().map(str::to_owned), errbacks)),
    }
}

fn failed(
    task_id: &str,
    lineage: &Lineage,
    chain: Vec<Signature>,
    errbacks: Vec<Signature>,
) -> Result<AfterFailure, CanvasError> {
    let mut after = AfterFailure::default();
    let mut ahead: std::collections::VecDeque<Signature> = chain.into();
    // Bounded: a chord body is looked into, and a hostile message could nest
    // them; past MAX_DEPTH nested bodies the rest is left to expire.
    let mut bodies = 0;
    while let Some(step) = ahead.pop_front() {
        if step.id().is_some() {
            after.doomed.push(doomed(&step));
        }
        // A chord step completes when its body does: that result fails too.
        if let Ok(Shape::Chord { body, .. }) = step.shape()
            && bodies < super::apply::MAX_DEPTH
        {
            bodies += 1;
            ahead.push_back(*body);
        }
    }
    let errback_lineage = Lineage {
        parent_id: Some(task_id.to_owned()),
        root_id: lineage.root_id.clone(),
    };
    let id = Value::String(task_id.to_owned());
    for errback in errbacks {
        after
            .errbacks
            .extend(apply(errback, slice::from_ref(&id), &errback_lineage)?);
    }
    Ok(after)
}

fn doomed(step: &Signature) -> Doomed {
    Doomed {
        task_id: step.id().unwrap_or_default().to_owned(),
        group_id: step.option_str("group_id").map(str::to_owned),
        group_index: step.options.get("group_index").and_then(Value::as_i64),
        chord: step
            .options
            .get("chord")
            .filter(|body| body.as_object().is_some_and(|body| !body.is_empty()))
            .cloned(),
        with_cause: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::SendOptions;

    fn message_with(embed: Value) -> TaskMessage {
        let mut message = TaskMessage::new(
            "add",
            vec![json!(2), json!(2)],
            Default::default(),
            &SendOptions::default(),
        );
        message.embed = serde_json::from_value(embed).unwrap();
        message
    }

    fn step(task: &str, args: Value, id: &str) -> Value {
        json!({"task": task, "args": args, "kwargs": {}, "options": {"task_id": id}, "subtask_type": null, "immutable": false})
    }

    #[test]
    fn success_sends_callbacks_then_the_next_step() {
        // As captured: msg1 chain=[add(100)#f399, add(10)#7872] → msg2 id 7872,
        // args [result, 10], parent msg1, chain=[add(100)#f399].
        let message = message_with(json!({
            "callbacks": [{"task": "mul", "args": [3], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}],
            "chain": [step("add", json!([100]), "f399"), step("add", json!([10]), "7872")],
        }));
        let plan = after_success(&message, &json!(2)).unwrap();
        let [callback, next] = &plan.messages[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(callback.message.args, vec![json!(2), json!(3)]);
        assert_eq!(next.message.headers.id, "7872");
        assert_eq!(next.message.args, vec![json!(2), json!(10)]);
        assert_eq!(
            next.message.headers.parent_id.as_deref(),
            Some(message.headers.id.as_str())
        );
        assert_eq!(next.message.headers.root_id, message.headers.root_id);
        let rest = Signature::list_from(Some(&next.message.embed.chain)).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id(), Some("f399"));
        // The last step gets an empty chain, as Celery sends it.
        let last = message_with(json!({"chain": [step("add", json!([100]), "f399")]}));
        let plan = after_success(&last, &json!(12)).unwrap();
        assert_eq!(plan.messages[0].message.embed.chain, json!([]));
    }

    #[test]
    fn nothing_follows_a_plain_task() {
        let plain = message_with(
            json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null}),
        );
        assert!(after_success(&plain, &json!(4)).unwrap().is_empty());
        assert_eq!(after_failure(&plain).unwrap(), AfterFailure::default());
    }

    #[test]
    fn failure_dooms_the_chain_and_calls_errbacks_with_the_id() {
        let chord_step = json!({"task": "celery.chord", "args": [], "kwargs": {"header": [step("add", json!([1]), "h0")], "body": step("xsum", json!([]), "body")}, "options": {"task_id": "gid"}, "subtask_type": "chord", "immutable": false});
        let message = message_with(json!({
            "chain": [step("mul", json!([3]), "last"), chord_step],
            "errbacks": [{"task": "log_error", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}],
        }));
        let after = after_failure(&message).unwrap();
        let ids: Vec<_> = after.doomed.iter().map(|d| d.task_id.as_str()).collect();
        assert_eq!(ids, ["last", "gid", "body"]);
        let errback = &after.errbacks.messages[0].message;
        assert_eq!(errback.args, vec![json!(message.headers.id)]);
        assert_eq!(
            errback.headers.parent_id.as_deref(),
            Some(message.headers.id.as_str())
        );
    }

    #[test]
    fn a_failed_chord_with_a_group_body_dooms_each_member() {
        let mut body = Signature::new("celery.group", vec![]);
        body.subtask_type = Some("group".into());
        body.set_option("task_id", json!("gid2"));
        body.kwargs.insert(
            "tasks".into(),
            json!([step("add", json!([1]), "m0"), step("add", json!([2]), "m1")]),
        );
        body.set_option("link_error", json!([step("echo", json!([]), "group-eb")]));
        let after = after_chord_failure(&body, &Lineage::default()).unwrap();
        let ids: Vec<_> = after.doomed.iter().map(|d| d.task_id.as_str()).collect();
        assert_eq!(ids, ["gid2", "m0", "m1"]);
        // They fail with the header task's own exception, not ChordError.
        assert!(after.doomed.iter().all(|doomed| doomed.with_cause));
        // The group's errback, once per member, with the member's id.
        let args: Vec<_> = after
            .errbacks
            .messages
            .iter()
            .map(|sent| sent.message.args.clone())
            .collect();
        assert_eq!(args, [vec![json!("m0")], vec![json!("m1")]]);
    }

    #[test]
    fn a_chord_in_a_group_body_fails_through_its_own_body() {
        // group(chord([add.si(2, 2)], tsum.s()), tsum.s()) with a group errback:
        // the chord's result is its body's, and the errback is called once
        // per member, with the member's result id.
        let inner_body = Signature::from_value(&step("tsum", json!([]), "inner-body")).unwrap();
        let inner = Signature::chord(
            vec![Signature::from_value(&step("add", json!([2, 2]), "h0")).unwrap()],
            inner_body,
        );
        let tsum = Signature::from_value(&step("tsum", json!([]), "m1")).unwrap();
        let body = Signature::group(vec![inner, tsum])
            .with_option("task_id", "gid3")
            .link_error(Signature::from_value(&step("echo", json!([]), "eb")).unwrap());
        let after = after_chord_failure(&body, &Lineage::default()).unwrap();
        let ids: Vec<_> = after.doomed.iter().map(|d| d.task_id.as_str()).collect();
        assert_eq!(ids, ["gid3", "inner-body", "m1"]);
        let args: Vec<_> = after
            .errbacks
            .messages
            .iter()
            .map(|sent| sent.message.args.clone())
            .collect();
        assert_eq!(args, [vec![json!("inner-body")], vec![json!("m1")]]);
    }

    #[test]
    fn a_failed_chord_dooms_its_body_and_what_follows() {
        let mut body = Signature::from_value(&step("xsum", json!([]), "body")).unwrap();
        body.set_option("group_id", json!("gid"));
        body.set_option("chain", json!([step("mul", json!([2]), "after")]));
        body.set_option("link_error", json!([step("log_error", json!([]), "eb")]));
        let after = after_chord_failure(&body, &Lineage::default()).unwrap();
        let ids: Vec<_> = after.doomed.iter().map(|d| d.task_id.as_str()).collect();
        assert_eq!(ids, ["body", "after"]);
        assert_eq!(after.doomed[0].group_id.as_deref(), Some("gid"));
        assert_eq!(after.errbacks.messages[0].message.args, vec![json!("body")]);
    }
}

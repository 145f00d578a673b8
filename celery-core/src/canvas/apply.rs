//! Applying a signature: turning a chain, a group, a chord or a plain task
//! call into the task messages that start it — what Celery's
//! `Signature.apply_async` does, as pure data (no broker here, so every
//! shape is unit-tested).
//!
//! * a **task** is one message; its options become headers and embed
//!   (`group_id` → header `group`, `link` → `callbacks`, `chain` → `chain`, …);
//! * a **chain** sends its first step, carrying the rest *reversed* in
//!   `embed.chain`, so each worker just pops the next one (§1.3);
//! * a **group** sends every member with headers `group` and `group_index`;
//! * a **chord** sends its header as a group whose members carry the body
//!   in `embed.chord`, after the chord's size is recorded in the result
//!   backend ([`Plan::chord_sizes`]) so the last member to finish knows it
//!   is the last (§1.5, §1.6).

use chrono::Utc;
use serde_json::Value;

use super::signature::{CanvasError, Shape, Signature};
use crate::protocol::{SendOptions, TaskMessage, time::parse_celery_time};

/// Deeper than this, a canvas is refused: a hostile message must not make
/// the worker recurse without bound.
pub const MAX_DEPTH: usize = 32;

/// The task that sets the new messages off: their `parent_id` and `root_id`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lineage {
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
}

impl Lineage {
    /// Messages sent because `message` finished: it is their parent, and its
    /// root (or itself, if it started the workflow) is theirs.
    pub fn after(message: &TaskMessage) -> Lineage {
        Lineage {
            parent_id: Some(message.headers.id.clone()),
            root_id: Some(
                message
                    .headers
                    .root_id
                    .clone()
                    .unwrap_or_else(|| message.headers.id.clone()),
            ),
        }
    }
}

/// One message to publish, and the queue its options ask for (`None`: the
/// application's default queue).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub message: TaskMessage,
    pub queue: Option<String>,
}

/// What applying a canvas takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// `(group id, number of header tasks)`, to record before any message
    /// is sent.
    pub chord_sizes: Vec<(String, usize)>,
    pub messages: Vec<Outgoing>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.chord_sizes.is_empty() && self.messages.is_empty()
    }

    pub fn extend(&mut self, other: Plan) {
        self.chord_sizes.extend(other.chord_sizes);
        self.messages.extend(other.messages);
    }
}

/// Applies `signature` with `front` before its own arguments (the parent's
/// result for a callback or a chain step; nothing for a fresh call).
pub fn apply(
    signature: Signature,
    front: &[Value],
    lineage: &Lineage,
) -> Result<Plan, CanvasError> {
    let mut plan = Plan::default();
    apply_into(&mut plan, signature, front, lineage, 0)?;
    Ok(plan)
}

fn apply_into(
    plan: &mut Plan,
    mut signature: Signature,
    front: &[Value],
    lineage: &Lineage,
    depth: usize,
) -> Result<(), CanvasError> {
    if depth > MAX_DEPTH {
        return Err(CanvasError::TooDeep(MAX_DEPTH));
    }
    match signature.shape()? {
        Shape::Task => plan
            .messages
            .push(message_for(signature.with_args_in_front(front), lineage)),
        Shape::Chain(mut steps) => {
            if steps.is_empty() {
                return Ok(());
            }
            // The chain's own options go to its first step, its callbacks
            // to its last and its errbacks to every step (whichever fails
            // calls them: Celery's `prepare_steps`); what already followed
            // the chain (a chain nested in a chain) runs after all of its steps.
            let append = |step: &mut Signature, link: &str| {
                if let Some(value) = signature.options.get(link) {
                    let mut links = Signature::list_values(step.options.get(link));
                    links.extend(Signature::list_values(Some(value)));
                    step.set_option(link, Value::Array(links));
                }
            };
            if let Some(last) = steps.last_mut() {
                append(last, "link");
            }
            for step in &mut steps {
                append(step, "link_error");
            }
            let mut first = steps.remove(0);
            inherit(&mut first, &signature);
            // Reversed, so that each worker pops the next step off the end.
            let mut rest = Signature::list_values(signature.options.get("chain"));
            rest.extend(steps.iter().rev().map(Signature::to_value));
            first.set_option("chain", Value::Array(rest));
            apply_into(plan, first, front, lineage, depth + 1)?;
        }
        Shape::Group(members) => {
            let group_id = signature.freeze();
            for (index, mut member) in members.into_iter().enumerate() {
                inherit(&mut member, &signature);
                // A group's links are each member's, replacing the member's
                // own, as the call-time options Celery's group applies its
                // members with (a chord's errback reaches a group body so).
                for link in ["link", "link_error"] {
                    if let Some(value) = signature.options.get(link) {
                        member.set_option(link, value.clone());
                    }
                }
                let member = member_of(member, &group_id, index, None);
                apply_into(plan, member, front, lineage, depth + 1)?;
            }
        }
        Shape::Chord {
            header,
            group_id,
            body,
        } => {
            let group_id = group_id.unwrap_or_else(|| signature.freeze());
            let mut body = *body;
            inherit(&mut body, &signature);
            // A chord's links are its body's (Celery's `chord.link` and
            // `chord.link_error`, with errbacks off the header by default).
            for link in ["link", "link_error"] {
                if let Some(value) = signature.options.get(link) {
                    let mut links = Signature::list_values(body.options.get(link));
                    links.extend(Signature::list_values(Some(value)));
                    body.set_option(link, Value::Array(links));
                }
            }
            body.freeze();
            body.set_option("group_id", Value::String(group_id.clone()));
            // A chord in the middle of a chain: what follows runs after the body.
            if let Some(rest) = signature.options.get("chain") {
                body.set_option("chain", rest.clone());
            }
            // Groups inside the header are one group with it, as Celery
            // unrolls them: every task counts once towards the chord.
            let header = flatten(header);
            if header.is_empty() {
                // Nothing to wait for: the body runs at once, on no results.
                return apply_into(plan, body, &[Value::Array(Vec::new())], lineage, depth + 1);
            }
            plan.chord_sizes.push((group_id.clone(), header.len()));
            let body = body.to_value();
            for (index, mut member) in header.into_iter().enumerate() {
                inherit(&mut member, &signature);
                let member = member_of(member, &group_id, index, Some(&body));
                apply_into(plan, member, front, lineage, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// What to wait for to have a canvas's result: one task's result (a task,
/// a chain's last step, a chord's body), or each member's of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Awaited {
    One(String),
    All(Vec<Awaited>),
}

impl Awaited {
    /// Every task id to wait for, in order.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Awaited::One(id) => vec![id.as_str()],
            Awaited::All(members) => members.iter().flat_map(Awaited::ids).collect(),
        }
    }
}

/// Gives every task of a canvas its id before anything is sent, as
/// Celery's `freeze()` does, so the caller can subscribe to the result
/// first. Returns what to wait for.
pub fn freeze(signature: &mut Signature) -> Result<Awaited, CanvasError> {
    freeze_at(signature, 0)
}

fn freeze_at(signature: &mut Signature, depth: usize) -> Result<Awaited, CanvasError> {
    if depth > MAX_DEPTH {
        return Err(CanvasError::TooDeep(MAX_DEPTH));
    }
    let frozen = |parts: &mut Vec<Signature>| -> Result<Vec<Awaited>, CanvasError> {
        parts
            .iter_mut()
            .map(|part| freeze_at(part, depth + 1))
            .collect()
    };
    let list = |parts: &[Signature]| Value::Array(parts.iter().map(Signature::to_value).collect());
    match signature.shape()? {
        Shape::Task => Ok(Awaited::One(signature.freeze())),
        Shape::Chain(mut steps) => {
            let last = frozen(&mut steps)?
                .pop()
                .unwrap_or(Awaited::All(Vec::new()));
            signature.kwargs.insert("tasks".to_owned(), list(&steps));
            Ok(last)
        }
        Shape::Group(mut members) => {
            signature.freeze();
            let all = frozen(&mut members)?;
            signature.kwargs.insert("tasks".to_owned(), list(&members));
            Ok(Awaited::All(all))
        }
        Shape::Chord {
            mut header,
            group_id,
            mut body,
        } => {
            let group_id = group_id.unwrap_or_else(|| signature.freeze());
            frozen(&mut header)?;
            let awaited = freeze_at(&mut body, depth + 1)?;
            // The header as it came (a group signature, or a bare list), frozen.
            let header = match signature.kwargs.get("header").map(Signature::from_value) {
                Some(Ok(mut group)) => {
                    group.kwargs.insert("tasks".to_owned(), list(&header));
                    group.set_option("task_id", Value::String(group_id));
                    group.to_value()
                }
                _ => list(&header),
            };
            signature.kwargs.insert("header".to_owned(), header);
            signature.kwargs.insert("body".to_owned(), body.to_value());
            Ok(awaited)
        }
    }
}

/// Options that describe a chain, group or chord itself, not its parts.
const OWN_OPTIONS: [&str; 7] = [
    "task_id",
    "group_id",
    "group_index",
    "chord",
    "chain",
    "link",
    "link_error",
];

/// Gives a part the options set on its container (`group(…).set(queue='q')`,
/// `chain.apply_async(countdown=…)`): they win, as call-time options do in
/// Celery's `apply_async`.
fn inherit(part: &mut Signature, container: &Signature) {
    for (name, value) in &container.options {
        if !OWN_OPTIONS.contains(&name.as_str()) {
            part.options.insert(name.clone(), value.clone());
        }
    }
}

/// A chord's header with the groups inside it unrolled into their tasks.
fn flatten(header: Vec<Signature>) -> Vec<Signature> {
    let mut tasks = Vec::with_capacity(header.len());
    for member in header {
        match member.shape() {
            Ok(Shape::Group(inner)) => {
                for mut task in flatten(inner) {
                    inherit(&mut task, &member);
                    tasks.push(task);
                }
            }
            _ => tasks.push(member),
        }
    }
    tasks
}

/// Marks a signature as member `index` of group `group_id` (and, in a
/// chord's header, as carrying the body). A chain is a member through its
/// last step: that is the result the group waits for.
fn member_of(
    mut member: Signature,
    group_id: &str,
    index: usize,
    body: Option<&Value>,
) -> Signature {
    if let Ok(Shape::Chain(mut steps)) = member.shape()
        && let Some(last) = steps.pop()
    {
        steps.push(member_of(last, group_id, index, body));
        let steps = steps.iter().map(Signature::to_value).collect();
        member
            .kwargs
            .insert("tasks".to_owned(), Value::Array(steps));
        return member;
    }
    member.set_option("group_id", Value::String(group_id.to_owned()));
    member.set_option("group_index", Value::from(index));
    if let Some(body) = body {
        member.set_option("chord", body.clone());
    }
    member
}

/// The message for a plain task signature, as Celery's `as_task_v2` builds
/// it from the signature's options.
fn message_for(mut signature: Signature, lineage: &Lineage) -> Outgoing {
    let id = signature.freeze();
    let options = &signature.options;
    let seconds = |name: &str| options.get(name).and_then(Value::as_f64);
    let time = |name: &str| match options.get(name) {
        Some(Value::String(text)) => parse_celery_time(text),
        Some(Value::Number(number)) => number
            .as_f64()
            .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
            .and_then(|delay| crate::protocol::time::after(Utc::now(), delay)),
        _ => None,
    };
    let send = SendOptions {
        // As in Celery, a countdown wins over an eta.
        eta: time("countdown").or_else(|| time("eta")),
        expires: time("expires"),
        priority: options
            .get("priority")
            .and_then(Value::as_u64)
            .map_or(0, |priority| u8::try_from(priority.min(255)).unwrap_or(255)),
        time_limit: seconds("time_limit"),
        soft_time_limit: seconds("soft_time_limit"),
        ignore_result: options.get("ignore_result").and_then(Value::as_bool) == Some(true),
    };
    let mut message = TaskMessage::new(
        &signature.task,
        signature.args.clone(),
        signature.kwargs.clone(),
        &send,
    );
    let headers = &mut message.headers;
    headers.id.clone_from(&id);
    headers.root_id = Some(lineage.root_id.clone().unwrap_or_else(|| id.clone()));
    headers.parent_id.clone_from(&lineage.parent_id);
    headers.group = signature.option_str("group_id").map(str::to_owned);
    headers.group_index = options.get("group_index").and_then(Value::as_i64);
    headers.shadow = signature.option_str("shadow").map(str::to_owned);
    headers.replaced_task_nesting = options
        .get("replaced_task_nesting")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    message.properties.correlation_id = id;
    if let Some(reply_to) = signature.option_str("reply_to") {
        message.properties.reply_to = Some(reply_to.to_owned());
    }
    message.embed.callbacks = links(options.get("link"));
    message.embed.errbacks = links(options.get("link_error"));
    message.embed.chain = options.get("chain").cloned().unwrap_or(Value::Null);
    message.embed.chord = match options.get("chord") {
        Some(Value::Object(body)) if !body.is_empty() => Value::Object(body.clone()),
        _ => Value::Null,
    };
    let queue = match options.get("queue") {
        Some(Value::String(name)) => Some(name.clone()),
        // kombu may write the Queue object out as a dict with its name.
        Some(Value::Object(queue)) => queue.get("name").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    Outgoing { message, queue }
}

/// `link` / `link_error` as Celery puts them in the embed: a list, or null
/// when there are none.
fn links(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items.clone()),
        Some(single @ Value::Object(_)) => Value::Array(vec![single.clone()]),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(name: &str, args: Value) -> Signature {
        let Value::Array(args) = args else {
            panic!("args must be a list")
        };
        Signature::new(name, args)
    }

    fn chain(steps: Vec<Signature>) -> Signature {
        Signature::chain(steps)
    }

    #[test]
    fn a_chains_errbacks_reach_every_step_and_its_callbacks_the_last() {
        // chain(identity.si(42), fail.s(), identity.si(42)) with a link and a link_error
        let chain = Signature::chain(vec![
            task("identity", json!([42])).immutable(),
            task("fail", json!([])),
            task("identity", json!([42])).immutable(),
        ])
        .link(task("done", json!([])))
        .link_error(task("eb", json!([])));
        let plan = apply(chain, &[], &Lineage::default()).unwrap();
        let first = &plan.messages[0].message;
        assert_eq!(first.embed.errbacks[0]["task"], "eb");
        assert!(first.embed.callbacks.is_null());
        // Reversed: the last step first.
        let rest = Signature::list_from(Some(&first.embed.chain)).unwrap();
        let (last, middle) = (&rest[0], &rest[1]);
        assert_eq!(middle.options["link_error"][0]["task"], "eb");
        assert!(!middle.options.contains_key("link"));
        assert_eq!(last.options["link_error"][0]["task"], "eb");
        assert_eq!(last.options["link"][0]["task"], "done");
    }

    #[test]
    fn a_groups_and_a_chords_errbacks_reach_their_tasks() {
        // chord([add.si(1, 1)], group(fail.s(), tsum.s()).set(link_error=eb))
        //     .apply_async(link_error=chord_eb)
        let eb = |name: &str| Signature::new("echo", vec![json!(name)]).immutable();
        let errback_names = |errbacks: Option<&Value>| -> Vec<Value> {
            Signature::list_values(errbacks)
                .iter()
                .map(|eb| eb["args"][0].clone())
                .collect()
        };
        let mut failing = task("fail", json!([]));
        failing.set_option("link_error", json!([eb("own").to_value()]));
        let body = Signature::group(vec![failing, task("tsum", json!([]))]).link_error(eb("group"));
        let chord =
            Signature::chord(vec![task("add", json!([1, 1]))], body).link_error(eb("chord"));
        let lineage = Lineage::default();
        // The chord's errback goes to its body, after the body's own.
        let plan = apply(chord, &[], &lineage).unwrap();
        let body = Signature::from_value(&plan.messages[0].message.embed.chord).unwrap();
        assert_eq!(
            errback_names(body.options.get("link_error")),
            [json!("group"), json!("chord")]
        );
        // The group's errbacks replace its members' own.
        let plan = apply(body, &[json!([2])], &lineage).unwrap();
        assert_eq!(plan.messages.len(), 2);
        for outgoing in &plan.messages {
            let errbacks = Some(&outgoing.message.embed.errbacks);
            assert_eq!(errback_names(errbacks), [json!("group"), json!("chord")]);
        }
    }

    #[test]
    fn a_callback_gets_the_result_in_front_and_its_parent() {
        let parent = Lineage {
            parent_id: Some("p".into()),
            root_id: Some("r".into()),
        };
        let plan = apply(task("mul", json!([3])), &[json!(4)], &parent).unwrap();
        assert!(plan.chord_sizes.is_empty());
        let message = &plan.messages[0].message;
        assert_eq!(message.args, vec![json!(4), json!(3)]);
        assert_eq!(message.headers.parent_id.as_deref(), Some("p"));
        assert_eq!(message.headers.root_id.as_deref(), Some("r"));
        assert_eq!(message.properties.correlation_id, message.headers.id);
        assert!(message.embed.chain.is_null() && message.embed.callbacks.is_null());
    }

    #[test]
    fn a_chain_sends_its_first_step_with_the_rest_reversed() {
        let mut steps = vec![
            task("add", json!([2, 2])),
            task("mul", json!([8])),
            task("add", json!([1])),
        ];
        for (i, step) in steps.iter_mut().enumerate() {
            step.set_option("task_id", json!(format!("s{i}")));
        }
        let plan = apply(chain(steps), &[], &Lineage::default()).unwrap();
        let [first] = &plan.messages[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(first.message.headers.id, "s0");
        assert_eq!(first.message.headers.root_id.as_deref(), Some("s0"));
        let rest = Signature::list_from(Some(&first.message.embed.chain)).unwrap();
        let ids: Vec<_> = rest.iter().map(|step| step.id().unwrap()).collect();
        assert_eq!(ids, ["s2", "s1"]);
    }

    #[test]
    fn a_group_numbers_its_members() {
        let mut group = Signature::new("celery.group", vec![]);
        group.subtask_type = Some("group".into());
        group.set_option("task_id", json!("gid"));
        group.kwargs.insert(
            "tasks".into(),
            json!([
                task("add", json!([1, 1])).to_value(),
                task("add", json!([2, 2])).to_value()
            ]),
        );
        let plan = apply(group, &[], &Lineage::default()).unwrap();
        let headers: Vec<_> = plan
            .messages
            .iter()
            .map(|out| {
                (
                    out.message.headers.group.clone(),
                    out.message.headers.group_index,
                )
            })
            .collect();
        assert_eq!(
            headers,
            [(Some("gid".into()), Some(0)), (Some("gid".into()), Some(1))]
        );
        assert!(plan.chord_sizes.is_empty());
    }

    #[test]
    fn a_chord_records_its_size_and_hands_each_member_the_body() {
        let mut chord = Signature::new("celery.chord", vec![]);
        chord.subtask_type = Some("chord".into());
        chord.kwargs.insert(
            "header".into(),
            json!([
                task("add", json!([1, 1])).to_value(),
                chain(vec![task("add", json!([2, 2])), task("mul", json!([2]))]).to_value()
            ]),
        );
        chord
            .kwargs
            .insert("body".into(), task("xsum", json!([])).to_value());
        chord.set_option("chain", json!([task("mul", json!([10])).to_value()]));
        let plan = apply(chord, &[], &Lineage::default()).unwrap();
        let (group_id, size) = plan.chord_sizes[0].clone();
        assert_eq!(size, 2);
        let [plain, chained] = &plan.messages[..] else {
            panic!("{plan:?}")
        };
        // The plain member carries the body; the chain carries it on its last step.
        assert_eq!(
            plain.message.headers.group.as_deref(),
            Some(group_id.as_str())
        );
        let body = Signature::from_value(&plain.message.embed.chord).unwrap();
        assert_eq!(body.task, "xsum");
        assert_eq!(body.option_str("group_id"), Some(group_id.as_str()));
        assert!(body.id().is_some());
        // What followed the chord in its chain follows the body.
        assert_eq!(
            Signature::list_from(body.options.get("chain")).unwrap()[0].task,
            "mul"
        );
        assert!(chained.message.headers.group.is_none());
        let last = &Signature::list_from(Some(&chained.message.embed.chain)).unwrap()[0];
        assert_eq!(last.option_str("group_id"), Some(group_id.as_str()));
        assert_eq!(last.options.get("group_index"), Some(&json!(1)));
        assert_eq!(last.options.get("chord"), Some(&body.to_value()));
    }

    #[test]
    fn an_empty_chord_runs_its_body_on_no_results() {
        let mut chord = Signature::new("celery.chord", vec![]);
        chord.subtask_type = Some("chord".into());
        chord.kwargs.insert("header".into(), json!([]));
        chord
            .kwargs
            .insert("body".into(), task("xsum", json!([])).to_value());
        let plan = apply(chord, &[], &Lineage::default()).unwrap();
        assert!(plan.chord_sizes.is_empty());
        assert_eq!(plan.messages[0].message.args, vec![json!([])]);
    }

    #[test]
    fn options_become_headers_and_queues() {
        let mut sig = task("add", json!([1, 2]));
        sig.options = serde_json::from_value(json!({
            "queue": "fast", "priority": 300, "countdown": 60, "time_limit": 5,
            "link": task("mul", json!([2])).to_value(), "shadow": "add-shadow"
        }))
        .unwrap();
        let out = &apply(sig, &[], &Lineage::default()).unwrap().messages[0];
        assert_eq!(out.queue.as_deref(), Some("fast"));
        assert_eq!(out.message.properties.priority, 255);
        assert!(out.message.eta().is_some_and(|eta| eta > Utc::now()));
        assert_eq!(
            out.message.hard_time_limit(),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            out.message.embed.callbacks.as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(out.message.headers.shadow.as_deref(), Some("add-shadow"));
    }

    #[test]
    fn freezing_names_what_to_wait_for() {
        let mut chord =
            crate::canvas::expression::parse("[add(1, 1), add(2, 2)] | xsum()").unwrap();
        let Awaited::One(body_id) = freeze(&mut chord).unwrap() else {
            panic!("a chord's result is its body's")
        };
        // Applying uses the frozen ids: the body the members carry is the one awaited.
        let plan = apply(chord, &[], &Lineage::default()).unwrap();
        let body = Signature::from_value(&plan.messages[0].message.embed.chord).unwrap();
        assert_eq!(body.id(), Some(body_id.as_str()));
        assert_eq!(plan.chord_sizes[0].0, body.option_str("group_id").unwrap());

        let mut group =
            crate::canvas::expression::parse("[add(1, 1), add(2, 2) | mul(2)]").unwrap();
        let awaited = freeze(&mut group).unwrap();
        let plan = apply(group, &[], &Lineage::default()).unwrap();
        let ids = awaited.ids();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], plan.messages[0].message.headers.id);
        // The chain's result is its last step's, which travels in the embed.
        let chained = Signature::list_from(Some(&plan.messages[1].message.embed.chain)).unwrap();
        assert_eq!(chained[0].id(), Some(ids[1]));
    }

    #[test]
    fn containers_hand_their_options_and_links_to_their_parts() {
        // group(add.s(1, 1), add.s(2, 2)).set(queue='gpu')
        let mut group = crate::canvas::expression::parse("[add(1, 1), add(2, 2)]").unwrap();
        group.set_option("queue", json!("gpu"));
        let plan = apply(group, &[], &Lineage::default()).unwrap();
        assert!(
            plan.messages
                .iter()
                .all(|out| out.queue.as_deref() == Some("gpu"))
        );
        // A chain's link goes to its last step; a chain nested in a chain
        // runs before what followed it.
        let mut inner = crate::canvas::expression::parse("add(1) | mul(2)").unwrap();
        inner.set_option("link", task("noop", json!([])).to_value());
        inner.set_option("chain", json!([task("xsum", json!([])).to_value()]));
        let plan = apply(inner, &[json!(1)], &Lineage::default()).unwrap();
        let rest = Signature::list_from(Some(&plan.messages[0].message.embed.chain)).unwrap();
        let names: Vec<_> = rest.iter().map(|step| step.task.as_str()).collect();
        assert_eq!(names, ["xsum", "mul"]);
        assert_eq!(
            Signature::list_from(rest[1].options.get("link")).unwrap()[0].task,
            "noop"
        );
    }

    #[test]
    fn groups_inside_a_chord_header_count_as_its_own_tasks() {
        let chord =
            crate::canvas::expression::parse("[add(1, 1), [add(2, 2), add(3, 3)]] | xsum()")
                .unwrap();
        let plan = apply(chord, &[], &Lineage::default()).unwrap();
        assert_eq!(plan.chord_sizes[0].1, 3);
        let indexes: Vec<_> = plan
            .messages
            .iter()
            .map(|out| out.message.headers.group_index)
            .collect();
        assert_eq!(indexes, [Some(0), Some(1), Some(2)]);
        assert!(
            plan.messages
                .iter()
                .all(|out| !out.message.embed.chord.is_null())
        );
    }

    #[test]
    fn hostile_nesting_is_refused() {
        let mut sig = task("noop", json!([]));
        for _ in 0..=MAX_DEPTH + 1 {
            sig = chain(vec![sig]);
        }
        assert_eq!(
            apply(sig, &[], &Lineage::default()),
            Err(CanvasError::TooDeep(MAX_DEPTH))
        );
    }
}

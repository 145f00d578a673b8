//! What a finished task sets off, carried out: the worker's side of
//! [`crate::canvas`]. [`follow_up`] decides from the message what must
//! happen; this module publishes the messages, stores the results and keeps
//! the chord count, in Celery's order (see `canvas/follow_up.rs`).
//!
//! Everything here runs before the task's message is acked. If a broker or
//! the result backend is away, the message is requeued and the task runs
//! again later: at least once, never lost. A rerun is safe for the chord
//! count (a part is counted once per task id) and for chain steps (their
//! ids were fixed when the chain was sent).

use serde_json::Value;
use tracing::{error, warn};

use super::execute::{WorkerContext, store_unless_ignored};
use crate::{
    backend::{ChordProgress, ExceptionInfo, HeaderPart, ResultMeta, TaskState},
    broker::{Broker, Producer, Settlement},
    canvas::{
        Lineage, Outgoing, Plan, Signature, apply,
        chord::join,
        follow_up::{self, AfterFailure},
    },
    protocol::TaskMessage,
};

/// A task succeeded with `value`: send its callbacks and the chain's next
/// step, store the result with its children, count it in its chord.
pub(super) async fn succeeded(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    value: Value,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    let plan = follow_up::after_success(message, &value).unwrap_or_else(|problem| {
        error!("Task {name}[{id}] has callbacks or a chain that cannot be read ({problem}); they are skipped");
        Plan::default()
    });
    let children = match publish(context, plan).await {
        Ok(children) => children,
        Err(problem) => {
            warn!("Task {name}[{id}] could not send what follows it ({problem}); requeueing it");
            return Settlement::Requeue;
        }
    };
    let meta = in_canvas(ResultMeta::success(id, value.clone()), message).with_children(&children);
    match store_unless_ignored(context, message, meta).await {
        Settlement::Ack => count_own_part(context, message, &TaskState::Success, &value).await,
        not_stored => not_stored,
    }
}

/// A task failed for good: store the FAILURE, count it in its chord, fail
/// the chain's remaining steps and send its errbacks.
pub(super) async fn failed(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    exception: &ExceptionInfo,
    traceback: String,
) -> Settlement {
    let id = &message.headers.id;
    let meta = in_canvas(ResultMeta::failure(id, exception, Some(traceback)), message);
    let stored = meta.result.clone();
    if let not_stored @ (Settlement::Reject | Settlement::Requeue) =
        store_unless_ignored(context, message, meta).await
    {
        return not_stored;
    }
    if let not_counted @ (Settlement::Reject | Settlement::Requeue) =
        count_own_part(context, message, &TaskState::Failure, &stored).await
    {
        return not_counted;
    }
    match follow_up::after_failure(message) {
        Ok(after) => fail_all(context, after, exception, &Lineage::after(message)).await,
        Err(problem) => {
            error!(
                "Task {}[{id}] has a chain or errbacks that cannot be read ({problem}); they are skipped",
                message.headers.task
            );
            Settlement::Ack
        }
    }
}

/// A task expired before it ran: REVOKED, and counted in its chord.
pub(super) async fn revoked(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
) -> Settlement {
    let meta = in_canvas(ResultMeta::revoked(&message.headers.id), message);
    let stored = meta.result.clone();
    match store_unless_ignored(context, message, meta).await {
        Settlement::Ack => count_own_part(context, message, &TaskState::Revoked, &stored).await,
        not_stored => not_stored,
    }
}

fn in_canvas(meta: ResultMeta, message: &TaskMessage) -> ResultMeta {
    meta.in_canvas(
        message.headers.group.as_deref(),
        message.headers.parent_id.as_deref(),
    )
}

/// Publishes a plan: chord sizes first (the result backend must know a
/// chord's size before any of its header tasks can finish), then every
/// message. Returns the ids sent.
async fn publish(context: &WorkerContext<impl Broker>, plan: Plan) -> Result<Vec<String>, String> {
    if !plan.chord_sizes.is_empty() {
        match &context.backend {
            Some(backend) => {
                for (group_id, size) in &plan.chord_sizes {
                    backend
                        .set_chord_size(group_id, *size)
                        .await
                        .map_err(|error| error.to_string())?;
                }
            }
            None => error!(
                "A chord needs a result backend to count its header, and this worker has none (--result-backend): its body will not run"
            ),
        }
    }
    if plan.messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut producer = context.producer.lock().await;
    let mut sent = Vec::with_capacity(plan.messages.len());
    for Outgoing { message, queue } in &plan.messages {
        let queue = queue.as_deref().unwrap_or(&context.default_queue);
        producer
            .send(message, queue)
            .await
            .map_err(|error| error.to_string())?;
        sent.push(message.headers.id.clone());
    }
    producer.flush().await.map_err(|error| error.to_string())?;
    Ok(sent)
}

/// A finished header task of a chord, to be counted.
struct Part<'a> {
    group_id: &'a str,
    task_id: &'a str,
    group_index: Option<i64>,
    /// The chord's body signature, carried by every header task.
    body: &'a Value,
    /// Parent and root of the body, should this part complete the chord.
    lineage: Lineage,
}

/// Counts the task of `message` in its chord, if it is a header task of one.
async fn count_own_part(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    state: &TaskState,
    result: &Value,
) -> Settlement {
    let (Some(group_id), false) = (&message.headers.group, message.embed.chord.is_null()) else {
        return Settlement::Ack;
    };
    let part = Part {
        group_id,
        task_id: &message.headers.id,
        group_index: message.headers.group_index,
        body: &message.embed.chord,
        lineage: Lineage::after(message),
    };
    count_part(context, part, state, result).await
}

/// Celery's `on_chord_part_return`: count the part; the worker that counts
/// the last one sends the body with every result — or, if a part failed,
/// fails the body with a `ChordError`.
async fn count_part(
    context: &WorkerContext<impl Broker>,
    part: Part<'_>,
    state: &TaskState,
    result: &Value,
) -> Settlement {
    let group_id = part.group_id;
    let Some(backend) = &context.backend else {
        warn!(
            "Chord {group_id}: this worker has no result backend (--result-backend) to count its header in; its body will not run"
        );
        return Settlement::Ack;
    };
    let header_part = HeaderPart {
        group_id,
        task_id: part.task_id,
        group_index: part.group_index,
        state,
        result,
    };
    let (entries, claim) = match backend.chord_part_return(&header_part).await {
        Ok(ChordProgress::Waiting) => return Settlement::Ack,
        Ok(ChordProgress::Complete { entries, claim }) => (entries, claim),
        Err(error) => {
            warn!(
                "Chord {group_id}: counting task {} failed ({error}); requeueing it",
                part.task_id
            );
            return Settlement::Requeue;
        }
    };
    let body = match Signature::from_value(part.body) {
        Ok(body) => body,
        Err(problem) => {
            error!("Chord {group_id} has a body that cannot be read ({problem}); it is skipped");
            return Settlement::Ack;
        }
    };
    match join(&entries) {
        Ok(results) => {
            match backend.hold_chord_claim(group_id, &claim).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(
                        "Chord callback for '{group_id}' not published: dispatch claim is no longer owned by this worker"
                    );
                    return Settlement::Ack;
                }
                Err(error) => {
                    warn!(
                        "Chord {group_id}: {error}; requeueing task {}",
                        part.task_id
                    );
                    return Settlement::Requeue;
                }
            }
            let plan = match apply(body, &[Value::Array(results)], &part.lineage) {
                Ok(plan) => plan,
                Err(problem) => {
                    error!(
                        "Chord {group_id} has a body that cannot be applied ({problem}); it is skipped"
                    );
                    return Settlement::Ack;
                }
            };
            if let Err(problem) = publish(context, plan).await {
                // The claim lapses by itself; the redelivered part claims again.
                warn!(
                    "Chord {group_id}: its body could not be sent ({problem}); requeueing task {}",
                    part.task_id
                );
                return Settlement::Requeue;
            }
            if let Err(error) = backend.finish_chord(group_id, &claim).await {
                warn!(
                    "Chord {group_id}: its body was sent, but its counters were not cleaned up ({error}); they expire in a day"
                );
            }
            Settlement::Ack
        }
        Err(chord_error) => {
            error!("Chord '{group_id}' raised: {}", chord_error.display());
            let after = match follow_up::after_chord_failure(&body, &part.lineage) {
                Ok(after) => after,
                Err(problem) => {
                    error!(
                        "Chord {group_id} has a body that cannot be read ({problem}); it is skipped"
                    );
                    return Settlement::Ack;
                }
            };
            let settled = Box::pin(fail_all(context, after, &chord_error, &part.lineage)).await;
            if let Err(error) = backend.forget_chord_size(group_id).await {
                warn!("Chord {group_id}: {error}");
            }
            settled
        }
    }
}

/// Stores `exception` as the FAILURE of every doomed task (counting those
/// in chords), then sends the errbacks.
async fn fail_all(
    context: &WorkerContext<impl Broker>,
    after: AfterFailure,
    exception: &ExceptionInfo,
    lineage: &Lineage,
) -> Settlement {
    for doomed in &after.doomed {
        let meta = ResultMeta::failure(&doomed.task_id, exception, None)
            .in_canvas(doomed.group_id.as_deref(), None);
        let stored = meta.result.clone();
        if let Some(backend) = &context.backend
            && let Err(error) = backend.store(&meta).await
        {
            warn!("{error}; requeueing the failed task");
            return Settlement::Requeue;
        }
        if let (Some(body), Some(group_id)) = (&doomed.chord, &doomed.group_id) {
            let part = Part {
                group_id,
                task_id: &doomed.task_id,
                group_index: doomed.group_index,
                body,
                lineage: lineage.clone(),
            };
            let counted = Box::pin(count_part(context, part, &TaskState::Failure, &stored)).await;
            if counted != Settlement::Ack {
                return counted;
            }
        }
    }
    match publish(context, after.errbacks).await {
        Ok(_) => Settlement::Ack,
        Err(problem) => {
            warn!("The errbacks could not be sent ({problem}); requeueing the failed task");
            Settlement::Requeue
        }
    }
}

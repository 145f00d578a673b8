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

use super::context::{WorkerContext, store_unless_ignored};
use crate::{
    backend::{
        BackendError, ChordProgress, ExceptionInfo, HeaderPart, ResultMeta, TaskState,
        header::{self as chord, ChordFailure, join},
    },
    broker::{Broker, BrokerError, Settlement},
    canvas::{
        Lineage, Outgoing, Plan, Signature, apply,
        follow_up::{self, AfterFailure},
    },
    protocol::TaskMessage,
};

/// A task succeeded with `value`: send its callbacks and the chain's next
/// step, store the result with its children (`sent`: what the task sent
/// itself, first), count it in its chord.
pub(super) async fn succeeded(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    value: Value,
    mut sent: Vec<String>,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    let plan = follow_up::after_success(message, &value).unwrap_or_else(|problem| {
        error!("Task {name}[{id}] has callbacks or a chain that cannot be read ({problem}); they are skipped");
        Plan::default()
    });
    let children = match publish(context, plan).await {
        Ok(children) => children,
        Err(not_sent) if not_sent.passing => {
            warn!(
                "Task {name}[{id}] could not send what follows it ({}); requeueing it",
                not_sent.reason
            );
            return Settlement::Requeue;
        }
        // Refused for good (a queue the broker will not declare): as in
        // Celery, the task fails with the error instead of running again.
        Err(not_sent) => {
            let exception = ExceptionInfo::new(
                "OperationalError",
                "kombu.exceptions",
                format!(
                    "what follows the task could not be sent: {}",
                    not_sent.reason
                ),
            );
            error!(
                "Task {name}[{id}] raised unexpected: {}",
                exception.display()
            );
            let traceback = format!("{}\n", exception.display());
            return Box::pin(failed(context, message, &exception, traceback)).await;
        }
    };
    sent.extend(children);
    let meta = in_canvas(ResultMeta::success(id, value), message).with_children(&sent);
    match store_unless_ignored(context, message, &meta).await {
        Settlement::Ack => count_own_part(context, message, &meta).await,
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
    let meta = in_canvas(
        ResultMeta::failure(id, exception, Some(traceback.clone())),
        message,
    );
    match store_unless_ignored(context, message, &meta).await {
        Settlement::Ack => {}
        not_stored => return not_stored,
    }
    match count_own_part(context, message, &meta).await {
        Settlement::Ack => {}
        not_counted => return not_counted,
    }
    match follow_up::after_failure(message) {
        Ok(after) => {
            let lineage = Lineage::after(message);
            fail_all(context, after, exception, None, Some(&traceback), &lineage).await
        }
        Err(problem) => {
            error!(
                "Task {}[{id}] has a chain or errbacks that cannot be read ({problem}); they are skipped",
                message.headers.task
            );
            Settlement::Ack
        }
    }
}

/// A task revoked or expired before it ran, or terminated while it ran:
/// REVOKED with Celery's `reason` (`revoked`, `expired`, `terminated`),
/// and counted in its chord.
pub(super) async fn revoked(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    reason: &str,
) -> Settlement {
    let meta = in_canvas(ResultMeta::revoked(&message.headers.id, reason), message);
    match store_unless_ignored(context, message, &meta).await {
        Settlement::Ack => count_own_part(context, message, &meta).await,
        not_stored => not_stored,
    }
}

/// The result of `message`'s task, with the group it belongs to and the
/// task that sent it, as Celery stores them.
pub(super) fn in_canvas(meta: ResultMeta, message: &TaskMessage) -> ResultMeta {
    meta.in_canvas(
        message.headers.group.as_deref(),
        message.headers.parent_id.as_deref(),
    )
}

/// Why follow-up messages were not sent.
pub(super) struct NotSent {
    pub(super) reason: String,
    /// The broker or the result backend was away: worth trying again later.
    pub(super) passing: bool,
}

impl From<BrokerError> for NotSent {
    fn from(error: BrokerError) -> Self {
        NotSent {
            passing: error.is_connection_error(),
            reason: error.to_string(),
        }
    }
}

impl From<std::sync::Arc<BrokerError>> for NotSent {
    fn from(error: std::sync::Arc<BrokerError>) -> Self {
        NotSent {
            passing: error.is_connection_error(),
            reason: error.to_string(),
        }
    }
}

impl From<BackendError> for NotSent {
    fn from(error: BackendError) -> Self {
        NotSent {
            passing: error.is_connection_error(),
            reason: error.to_string(),
        }
    }
}

/// Publishes a plan: chord sizes first (the result backend must know a
/// chord's size before any of its header tasks can finish), then every
/// message. Returns the ids sent.
pub(super) async fn publish(
    context: &WorkerContext<impl Broker>,
    plan: Plan,
) -> Result<Vec<String>, NotSent> {
    if !plan.chord_sizes.is_empty() {
        match &context.backend {
            Some(backend) => {
                for (group_id, size) in &plan.chord_sizes {
                    backend.set_chord_size(group_id, *size).await?;
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
    let sent = plan
        .messages
        .iter()
        .map(|outgoing| outgoing.message.headers.id.clone())
        .collect();
    let messages = plan
        .messages
        .into_iter()
        .map(|Outgoing { message, queue }| {
            let queue = queue.unwrap_or_else(|| context.default_queue.clone());
            (message, queue)
        })
        .collect();
    context.publisher.publish(messages).await?;
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

/// Counts the task of `message`, whose result is `stored`, in its chord, if
/// it is a header task of one.
async fn count_own_part(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    stored: &ResultMeta,
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
    count_part(context, part, &stored.status, &stored.result).await
}

/// Celery's `on_chord_part_return`: count the part; the worker that counts
/// the last one sends the body with every result — or, if a part failed,
/// fails the body with a `ChordError`.
///
/// Only an absent backend or broker sends the part's task back to its queue
/// (the count is idempotent, so running it again is safe); a refusal (say a
/// Python app set `result_chord_ordered=False`, so `.j` is a list) is logged
/// and the task acked, never requeued for ever.
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
    let trouble = |doing: &str, error: BackendError| {
        if error.is_connection_error() {
            warn!(
                "Chord {group_id}: {doing} failed ({error}); requeueing task {}",
                part.task_id
            );
            Settlement::Requeue
        } else {
            error!("Chord {group_id}: {doing} was refused ({error}); its body will not run");
            Settlement::Ack
        }
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
        Err(error) => return trouble("counting a header task", error),
    };
    let body = match Signature::from_value(part.body) {
        Ok(body) => body,
        Err(problem) => {
            error!("Chord {group_id} has a body that cannot be read ({problem}); it is skipped");
            return Settlement::Ack;
        }
    };
    let results = match join(&entries) {
        Ok(results) => results,
        Err(failure) => {
            let settled = chord_failed(context, &part, &body, &failure).await;
            if let Err(error) = backend.forget_chord_size(group_id).await {
                warn!("Chord {group_id}: {error}");
            }
            return settled;
        }
    };
    match backend.hold_chord_claim(group_id, &claim).await {
        Ok(true) => {}
        Ok(false) => {
            warn!(
                "Chord callback for '{group_id}' not published: dispatch claim is no longer owned by this worker"
            );
            return Settlement::Ack;
        }
        Err(error) => return trouble("holding the claim on its body", error),
    }
    let sent = match apply(body.clone(), &[Value::Array(results)], &part.lineage) {
        Ok(plan) => publish(context, plan).await,
        Err(problem) => Err(NotSent {
            reason: problem.to_string(),
            passing: false,
        }),
    };
    let settled = match sent {
        Ok(_) => Settlement::Ack,
        // The claim lapses by itself; the redelivered part claims again.
        Err(not_sent) if not_sent.passing => {
            warn!(
                "Chord {group_id}: its body could not be sent ({}); requeueing task {}",
                not_sent.reason, part.task_id
            );
            return Settlement::Requeue;
        }
        Err(not_sent) => {
            let failure = ChordFailure::from(chord::chord_error(format!(
                "Callback error: {}",
                not_sent.reason
            )));
            chord_failed(context, &part, &body, &failure).await
        }
    };
    if let Err(error) = backend.finish_chord(group_id, &claim).await {
        warn!("Chord {group_id}: its counters were not cleaned up ({error}); they expire in a day");
    }
    settled
}

/// Celery's `chord_error_from_stack`: the body fails with `chord_error`,
/// and so does what would have followed it; its errbacks are sent.
async fn chord_failed(
    context: &WorkerContext<impl Broker>,
    part: &Part<'_>,
    body: &Signature,
    failure: &ChordFailure,
) -> Settlement {
    error!(
        "Chord '{}' raised: {}",
        part.group_id,
        failure.error.display()
    );
    match follow_up::after_chord_failure(body, &part.lineage) {
        Ok(after) => {
            let cause = failure.cause.as_deref();
            Box::pin(fail_all(
                context,
                after,
                &failure.error,
                cause,
                None,
                &part.lineage,
            ))
            .await
        }
        Err(problem) => {
            error!(
                "Chord {} has a body that cannot be read ({problem}); it is skipped",
                part.group_id
            );
            Settlement::Ack
        }
    }
}

/// Stores `exception` as the FAILURE of every doomed task (`cause`, the
/// failed chord header task's own, for those that fail with it), counting
/// those in chords, then sends the errbacks.
async fn fail_all(
    context: &WorkerContext<impl Broker>,
    after: AfterFailure,
    exception: &ExceptionInfo,
    cause: Option<&ExceptionInfo>,
    traceback: Option<&str>,
    lineage: &Lineage,
) -> Settlement {
    for doomed in &after.doomed {
        let exception = match cause {
            Some(cause) if doomed.with_cause => cause,
            _ => exception,
        };
        let meta = ResultMeta::failure(&doomed.task_id, exception, traceback.map(str::to_owned))
            .in_canvas(doomed.group_id.as_deref(), None);
        if let Some(backend) = &context.backend
            && let Err(error) = backend.store(&meta).await
        {
            if !error.is_connection_error() {
                error!(
                    "{error}; the failure of task {} is not stored",
                    doomed.task_id
                );
                continue;
            }
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
            let counted = Box::pin(count_part(context, part, &meta.status, &meta.result)).await;
            if counted != Settlement::Ack {
                return counted;
            }
        }
    }
    match publish(context, after.errbacks).await {
        Ok(_) => Settlement::Ack,
        Err(not_sent) if not_sent.passing => {
            warn!(
                "The errbacks could not be sent ({}); requeueing the failed task",
                not_sent.reason
            );
            Settlement::Requeue
        }
        Err(not_sent) => {
            error!(
                "The errbacks could not be sent ({}); they are dropped",
                not_sent.reason
            );
            Settlement::Ack
        }
    }
}

//! What happens to one task message, from "received" to ack.
//!
//! The order of checks follows Celery's worker (`celery-protocol.md` §A.7,
//! §E): an unreadable or unregistered message is rejected; a revoked one
//! (`control/revoked.rs`: checked on arrival and again just before it runs)
//! or an expired one is discarded as REVOKED; one with a future `eta` is
//! held — without taking a concurrency slot — until it is due; then it runs
//! under its hard time limit (or until `revoke --terminate` stops it), its
//! outcome is logged in Celery's words, sent as a task event and stored in
//! the result backend, and only then is the message acked (Celery's
//! `acks_late`): a worker that dies mid-task leaves the message to be
//! delivered again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use futures_lite::FutureExt;

use super::{
    canvas,
    context::{TokenOf, WorkerContext, store, store_unless_ignored},
};

use crate::{
    backend::{ExceptionInfo, ResultMeta},
    broker::{Broker, Consumer, Delivery, Settlement},
    canvas::Signature,
    control::events::TaskEvent,
    protocol::{
        TaskMessage,
        pyrepr::{abbreviate, repr},
    },
    task::{Body, Request, Task, TaskError, TaskResult, WorkerLink},
};
use serde_json::Value;

/// How processing one delivery ended.
#[derive(Debug)]
pub enum Processed<Token> {
    Settled,
    /// Never started (warm shutdown before its ETA): hand it back.
    GiveBack(Token),
}

/// Processes one delivery to the end.
pub async fn process<B: Broker>(
    context: Arc<WorkerContext<B>>,
    delivery: Delivery<TokenOf<B>>,
) -> Processed<TokenOf<B>> {
    let Delivery {
        received,
        queue,
        token,
        redelivered,
    } = delivery;
    let message = match received.message {
        Ok(message) => message,
        Err(problem) => {
            let id = received.task_id.as_deref().unwrap_or("?");
            let name = received.task_name.as_deref().unwrap_or("?");
            error!(
                "Received invalid task message {name}[{id}] from '{queue}': {problem}. Rejecting it."
            );
            if let Some(task_id) = &received.task_id {
                let (exc_type, exc_module) = problem.exception();
                store(
                    &context,
                    &ResultMeta::failure(
                        task_id,
                        &ExceptionInfo::new(exc_type, exc_module, problem.to_string()),
                        None,
                    ),
                )
                .await;
            }
            context.consumer.settle(token, Settlement::Reject);
            return Processed::Settled;
        }
    };
    let (name, id) = (message.headers.task.clone(), message.headers.id.clone());
    let Some(task) = context.registry.get(&name).cloned() else {
        error!(
            "Received unregistered task of type '{name}'. The message has been ignored and discarded. (id {id}, args {})",
            abbreviate(&repr(&serde_json::Value::Array(message.args.clone())), 1024)
        );
        let exception =
            ExceptionInfo::new("NotRegistered", "celery.exceptions", format!("'{name}'"));
        store(&context, &ResultMeta::failure(&id, &exception, None)).await;
        context.consumer.settle(token, Settlement::Reject);
        return Processed::Settled;
    };
    info!("Task {name}[{id}] received");
    let message = Arc::new(message);
    let tracked = context.state.received(message.clone(), &queue, redelivered);
    context.events.task(&id, TaskEvent::Received(&message));
    let mut token = token;
    if context.state.is_revoked(&id) {
        return discard_revoked(&context, &message, token, false).await;
    }

    if let Some(eta) = message.eta()
        && eta > Utc::now()
    {
        // Held in memory until due; it must not occupy a prefetch or a
        // concurrency slot meanwhile, or a few far-future tasks would starve
        // the queue.
        tracked.scheduled(eta);
        context.consumer.release_slot(&mut token);
        let wait = (eta - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = context.stop_waiting.cancelled() => return Processed::GiveBack(token),
        }
        tracked.reserved();
    }
    if message
        .expires()
        .is_some_and(|expires| expires <= Utc::now())
    {
        return discard_revoked(&context, &message, token, true).await;
    }

    let settlement = {
        let _slot = context.concurrency.acquire().await;
        // Checked again: a revoke may have come while it waited for its
        // ETA or for a slot.
        if context.state.is_revoked(&id) {
            return discard_revoked(&context, &message, token, false).await;
        }
        let terminate = tracked.started(&name);
        context.events.task(&id, TaskEvent::Started);
        run(&context, &task, &message, &queue, redelivered, terminate).await
    };
    context.consumer.settle(token, settlement);
    Processed::Settled
}

/// A revoked (or expired) task is not run: REVOKED is stored, the event
/// sent, and the message acked, as Celery's `Request.revoked()` does.
async fn discard_revoked<B: Broker>(
    context: &WorkerContext<B>,
    message: &TaskMessage,
    token: TokenOf<B>,
    expired: bool,
) -> Processed<TokenOf<B>> {
    let (name, id) = (&message.headers.task, &message.headers.id);
    info!("Discarding revoked task: {name}[{id}]");
    context.events.task(
        id,
        TaskEvent::Revoked {
            terminated: false,
            expired,
        },
    );
    let reason = if expired { "expired" } else { "revoked" };
    let settlement = canvas::revoked(context, message, reason).await;
    context.consumer.settle(token, settlement);
    Processed::Settled
}

/// Runs the task under its hard time limit, then logs and stores the
/// outcome. `terminate` fires on `revoke(terminate=True)`: the task's
/// future is dropped at its next await, and it counts as REVOKED.
async fn run<B: Broker>(
    context: &Arc<WorkerContext<B>>,
    task: &Task,
    message: &TaskMessage,
    queue: &str,
    redelivered: bool,
    terminate: CancellationToken,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    let started = Instant::now();
    // The task's way back to the worker: what it sends, and its states.
    let link = WorkerLink::to(context.clone());
    let request = Request::of(
        message,
        queue,
        redelivered,
        &context.state.hostname,
        link.clone(),
    );
    let context = context.as_ref();
    let outcome = tokio::select! {
        outcome = execute(context, task, message, request) => outcome,
        () = terminate.cancelled() => {
            info!("Terminating {id} (Signals.SIGTERM)");
            error!("Task handler raised error: Terminated(15)");
            context.events.task(id, TaskEvent::Revoked { terminated: true, expired: false });
            return canvas::revoked(context, message, "terminated").await;
        }
    };
    let runtime = started.elapsed().as_secs_f64();
    match outcome {
        Ok(value) => {
            info!(
                "Task {name}[{id}] succeeded in {runtime}s: {}",
                repr(&value)
            );
            context.events.task(
                id,
                TaskEvent::Succeeded {
                    result: &value,
                    runtime,
                },
            );
            canvas::succeeded(context, message, value, link.sent()).await
        }
        Err(TaskError::Replace(signature)) => replaced(context, message, *signature).await,
        Err(TaskError::Retry(retry_request)) => {
            let options = task.task_options();
            let limit = retry_request.max_retries.unwrap_or(options.max_retries);
            if !may_retry(limit, message.headers.retries) {
                // Out of retries: the reason for the last one is the failure.
                return failed(context, message, retry_request.exception).await;
            }
            let when = match (retry_request.eta, retry_request.countdown) {
                (Some(eta), _) => When::At(eta),
                (None, Some(countdown)) => When::In(countdown),
                (None, None) => When::In(options.default_retry_delay),
            };
            retry(context, message, queue, retry_request.exception, when).await
        }
        // `autoretry_for`: the failure is retried, with the task's backoff.
        Err(TaskError::Fail(exception))
            if task
                .task_options()
                .retries_automatically(&exception.exc_type)
                && may_retry(task.task_options().max_retries, message.headers.retries) =>
        {
            let retries = u32::try_from(message.headers.retries.max(0)).unwrap_or(u32::MAX);
            let countdown = task
                .task_options()
                .autoretry_countdown(retries, &mut rand::rng());
            retry(context, message, queue, exception, When::In(countdown)).await
        }
        Err(TaskError::Fail(exception)) => failed(context, message, exception).await,
    }
}

/// Whether a task retried `retries` times may retry again under `limit`
/// (`None`: for ever).
fn may_retry(limit: Option<u32>, retries: i64) -> bool {
    limit.is_none_or(|max| retries < i64::from(max))
}

/// When a retry runs: Celery logs `Retry in 2s` or `Retry at <eta>`.
enum When {
    In(Duration),
    At(chrono::DateTime<Utc>),
}

/// Logs, reports and stores a task's failure.
async fn failed(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    exception: ExceptionInfo,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    error!(
        "Task {name}[{id}] raised unexpected: {}",
        exception.display()
    );
    let traceback = format!(
        "Traceback (most recent call last):\n  (Rust task {name})\n{}\n",
        exception.display()
    );
    context.events.task(
        id,
        TaskEvent::Failed {
            exception: &exception,
            traceback: &traceback,
        },
    );
    canvas::failed(context, message, &exception, traceback).await
}

/// Runs the body: bound arguments, its pool, its time limit. A panic in the
/// body is the task's failure, like an exception in Python: the message is
/// still settled.
async fn execute(
    context: &WorkerContext<impl Broker>,
    task: &Task,
    message: &TaskMessage,
    request: Request,
) -> TaskResult<Value> {
    let bound = task.bind(&message.args, &message.kwargs)?;
    let running = async {
        match &task.body {
            Body::Async(body) => std::panic::AssertUnwindSafe(body(request, bound))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panicked(&*panic))),
            Body::Blocking(body) => {
                // The thread is taken only once a place in the pool is free;
                // a time limit cannot stop it (a thread cannot be cancelled),
                // it only stops waiting for it.
                let _place = context.blocking_pool.acquire().await;
                let body = body.clone();
                match tokio::task::spawn_blocking(move || body(request, bound)).await {
                    Ok(outcome) => outcome,
                    Err(error) if error.is_panic() => Err(panicked(&*error.into_panic())),
                    Err(error) => Err(TaskError::fail("Exception", "builtins", error.to_string())),
                }
            }
        }
    };
    match message.hard_time_limit() {
        Some(limit) => tokio::time::timeout(limit, running)
            .await
            .unwrap_or_else(|_| {
                Err(TaskError::Fail(ExceptionInfo {
                    exc_type: "TimeLimitExceeded".to_owned(),
                    exc_message: vec![serde_json::json!(limit.as_secs_f64())],
                    exc_module: "celery.exceptions".to_owned(),
                }))
            }),
        None => running.await,
    }
}

/// A panic in a task body, as the failure it stores.
fn panicked(panic: &(dyn std::any::Any + Send)) -> TaskError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    TaskError::fail("Panic", "rust", format!("the task panicked: {what}"))
}

/// Celery's `self.replace(signature)`: the replacement takes the task's id
/// and place (`canvas/replace.rs`) and is sent; the task itself stores no
/// result and is acked, as Celery's `Ignore` is. A signature Celery refuses
/// fails the task with Celery's `ImproperlyConfigured`.
async fn replaced(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    signature: Signature,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    let refused =
        |reason: String| ExceptionInfo::new("ImproperlyConfigured", "celery.exceptions", reason);
    let plan = match crate::canvas::replace(message, signature) {
        Ok(plan) => plan,
        Err(problem) => return failed(context, message, refused(problem.to_string())).await,
    };
    match canvas::publish(context, plan).await {
        Ok(_) => {
            info!("Task {name}[{id}] ignored");
            Settlement::Ack
        }
        Err(not_sent) if not_sent.passing => {
            warn!(
                "Task {name}[{id}] could not send its replacement ({}); requeueing it",
                not_sent.reason
            );
            Settlement::Requeue
        }
        Err(not_sent) => {
            let exception =
                ExceptionInfo::new("OperationalError", "kombu.exceptions", not_sent.reason);
            failed(context, message, exception).await
        }
    }
}

/// Celery's retry: publish a new message with the same id, then ack the
/// original. If the publish fails, requeue the original instead — never ack
/// a task whose retry was not sent.
async fn retry(
    context: &WorkerContext<impl Broker>,
    message: &TaskMessage,
    queue: &str,
    exception: ExceptionInfo,
    when: When,
) -> Settlement {
    let (name, id) = (&message.headers.task, &message.headers.id);
    let eta = match &when {
        // A countdown too far for the calendar means "now": a retry is never lost.
        When::In(countdown) => {
            crate::protocol::time::after(Utc::now(), *countdown).unwrap_or_else(Utc::now)
        }
        When::At(eta) => *eta,
    };
    let retry = message.retry(eta);
    let sent = context
        .publisher
        .publish(vec![(retry, queue.to_owned())])
        .await;
    if let Err(error) = sent {
        warn!("Task {name}[{id}] could not publish its retry ({error}); requeueing it");
        return Settlement::Requeue;
    }
    let reason = match when {
        When::In(countdown) => format!(
            "Retry in {}s: {}",
            countdown.as_secs_f64(),
            exception.display()
        ),
        When::At(eta) => format!("Retry at {}: {}", eta.to_rfc3339(), exception.display()),
    };
    info!("Task {name}[{id}] retry: {reason}");
    let traceback = format!("celery.exceptions.Retry: {reason}\n");
    context.events.task(
        id,
        TaskEvent::Retried {
            exception: &exception,
            traceback: &traceback,
        },
    );
    let meta = canvas::in_canvas(ResultMeta::retry(id, &exception, traceback), message);
    store_unless_ignored(context, message, &meta).await
}

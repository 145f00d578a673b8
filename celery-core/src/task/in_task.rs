//! What a running task can ask of the worker running it, through its
//! [`Request`]: send a task or a canvas (Celery's `sig.apply_async()` inside
//! a task) and store a state of its own (`self.update_state(…)`).
//!
//! The task module knows nothing of brokers: the worker hands every request
//! a [`WorkerLink`] to itself, behind the small [`Worker`] trait
//! (`worker/services.rs` implements it). A request built by
//! [`Request::new`], for calling a body directly from Rust, has no worker,
//! and asking it to send fails with a one-line error.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use serde_json::Value;

use super::{Request, TaskError, TaskResult};
use crate::{
    backend::{ResultMeta, TaskState},
    canvas::{Awaited, Lineage, Plan, Signature, apply, freeze},
};

/// A boxed future, as a trait object method returns one.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The worker, as a running task sees it.
pub(crate) trait Worker: Send + Sync {
    /// Sends `plan` (chord sizes first) to the queues its messages name,
    /// or the worker's default queue.
    fn send_plan(&self, plan: Plan) -> Pending<'_, TaskResult<()>>;
    /// Stores `meta` in the result backend.
    fn store_meta(&self, meta: ResultMeta) -> Pending<'_, TaskResult<()>>;
}

/// A request's way back to its worker, and the ids of what the task sent
/// (Celery's `request.children`, stored with its result).
#[derive(Clone, Default)]
pub(crate) struct WorkerLink {
    worker: Option<Arc<dyn Worker>>,
    sent: Arc<Mutex<Vec<String>>>,
}

impl WorkerLink {
    pub(crate) fn to(worker: Arc<dyn Worker>) -> WorkerLink {
        WorkerLink {
            worker: Some(worker),
            sent: Arc::default(),
        }
    }

    /// The ids of the tasks the task sent, in order.
    pub(crate) fn sent(&self) -> Vec<String> {
        self.sent.lock().map(|ids| ids.clone()).unwrap_or_default()
    }

    fn worker(&self, what: &str) -> TaskResult<&dyn Worker> {
        self.worker.as_deref().ok_or_else(|| {
            TaskError::fail(
                "RuntimeError",
                "builtins",
                format!(
                    "{what} needs a worker, and this request was built by Request::new; run the task on a worker"
                ),
            )
        })
    }
}

impl std::fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.worker.is_some() {
            "WorkerLink(running)"
        } else {
            "WorkerLink(none)"
        })
    }
}

/// The link is how a request reaches its worker, not part of what the
/// request says: two requests with the same fields are equal.
impl PartialEq for WorkerLink {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Request {
    /// Sends a task or a canvas from inside the task, as Celery's
    /// `sig.apply_async()` in a task body does: this task is the parent of
    /// what it sends, its root is theirs, and their ids are recorded as its
    /// result's `children`. Returns what to wait for (every id is fixed
    /// before anything is sent). A blocking body (on the worker's thread
    /// pool) calls it through `tokio::runtime::Handle::current().block_on`.
    ///
    /// ```no_run
    /// # use celery_core::{canvas::Signature, task::{Request, TaskResult}};
    /// # use serde_json::json;
    /// // def chain_add(x, y): (add.s(x, x) | add.s(y)).apply_async()
    /// async fn chain_add(request: Request, (x, y): (i64, i64)) -> TaskResult<()> {
    ///     let chain = Signature::chain(vec![
    ///         Signature::new("add", vec![json!(x), json!(x)]),
    ///         Signature::new("add", vec![json!(y)]),
    ///     ]);
    ///     request.send(chain).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn send(&self, mut signature: Signature) -> TaskResult<Awaited> {
        let worker = self.worker.worker("sending a task")?;
        let what = signature_name(&signature).to_owned();
        let cannot = |problem: String| {
            TaskError::fail(
                "ValueError",
                "builtins",
                format!("cannot send {what}: {problem}"),
            )
        };
        let awaited = freeze(&mut signature).map_err(|error| cannot(error.to_string()))?;
        let lineage = Lineage {
            parent_id: Some(self.id.clone()),
            root_id: Some(self.root_id.clone().unwrap_or_else(|| self.id.clone())),
        };
        let plan = apply(signature, &[], &lineage).map_err(|error| cannot(error.to_string()))?;
        worker.send_plan(plan).await?;
        if let Ok(mut sent) = self.worker.sent.lock() {
            sent.extend(awaited.ids().into_iter().map(str::to_owned));
        }
        Ok(awaited)
    }

    /// Celery's `self.update_state(state='PROGRESS', meta={…})`: stores a
    /// state of the task's own choosing, with `meta` as its result, for
    /// `AsyncResult.state` and `.info` to read while the task runs. On a
    /// worker with no result backend it fails, as Celery's does
    /// (`NotImplementedError`).
    pub async fn update_state(&self, state: &str, meta: Value) -> TaskResult<()> {
        let worker = self.worker.worker("update_state")?;
        let state = TaskState::named(state.to_owned());
        let meta = ResultMeta::of_state(&self.id, state, meta)
            .in_canvas(self.group.as_deref(), self.parent_id.as_deref());
        worker.store_meta(meta).await
    }
}

fn signature_name(signature: &Signature) -> &str {
    match signature.subtask_type.as_deref() {
        Some(kind) => kind,
        None => &signature.task,
    }
}

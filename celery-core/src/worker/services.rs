//! What a running task asks of its worker (`task/in_task.rs`): sending a
//! task or a canvas, storing a state. The worker's context answers, with
//! the same publisher and result backend its follow-ups use.

use super::{canvas, context::WorkerContext};
use crate::{
    backend::ResultMeta,
    broker::Broker,
    canvas::Plan,
    task::{Pending, TaskError, TaskResult, Worker},
};

impl<B: Broker> Worker for WorkerContext<B> {
    fn send_plan(&self, plan: Plan) -> Pending<'_, TaskResult<()>> {
        Box::pin(async move {
            canvas::publish(self, plan)
                .await
                .map(drop)
                // What Celery raises when the broker does not take a message.
                .map_err(|not_sent| {
                    TaskError::fail("OperationalError", "kombu.exceptions", not_sent.reason)
                })
        })
    }

    fn store_meta(&self, meta: ResultMeta) -> Pending<'_, TaskResult<()>> {
        Box::pin(async move {
            let Some(backend) = &self.backend else {
                // Celery's DisabledBackend.
                return Err(TaskError::fail(
                    "NotImplementedError",
                    "builtins",
                    "No result backend is configured. Please see the documentation for more information.",
                ));
            };
            backend.store(&meta).await.map(drop).map_err(|error| {
                TaskError::fail("BackendStoreError", "celery.exceptions", error.to_string())
            })
        })
    }
}

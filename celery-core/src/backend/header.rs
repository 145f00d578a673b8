//! A chord's header results, as the Redis result backend keeps them while
//! the header runs (`celery-canvas-control-events.md` §1.6): each finished
//! header task adds `[1, "<task id>", "<STATE>", <result>]` to the sorted
//! set `celery-taskset-meta-<gid>.j`, scored by its `group_index`. The
//! worker that adds the last one joins them here: the results in header
//! order for the body, or the first failure as the `ChordError` Python
//! raises (`Dependency <id> raised ValueError('boom')`).

use serde_json::Value;

use crate::{
    backend::{ExceptionInfo, TaskState},
    protocol::json::to_python_json,
};

/// One header task's entry in `.j`, exactly as Celery's
/// `encode([1, tid, state, result])` writes it.
pub fn header_entry(task_id: &str, state: &TaskState, result: &Value) -> String {
    to_python_json(&(1, task_id, state.as_str(), result))
}

/// Why a chord's body cannot run: Celery's `ChordError`, and the exception
/// of the header task that failed (the `ChordError`'s `__cause__`), when
/// one did. A group body's tasks fail with the cause, as in Celery 5.7.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordFailure {
    pub error: ExceptionInfo,
    /// Boxed: a failure is the rare path, and keeps `join`'s result small.
    pub cause: Option<Box<ExceptionInfo>>,
}

impl From<ExceptionInfo> for ChordFailure {
    fn from(error: ExceptionInfo) -> Self {
        ChordFailure { error, cause: None }
    }
}

/// Joins the header's entries (already in `group_index` order): every
/// result, or the `ChordError` of the first one that failed or was revoked.
pub fn join(entries: &[String]) -> Result<Vec<Value>, ChordFailure> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let (_, task_id, state, result): (Value, String, String, Value) =
            serde_json::from_str(entry).map_err(|error| {
                chord_error(format!(
                    "Join error: unreadable header result {entry:?}: {error}"
                ))
            })?;
        if state == "FAILURE" || state == "REVOKED" {
            let cause = serde_json::from_value::<ExceptionInfo>(result.clone())
                .ok()
                .map(Box::new);
            let raised = cause
                .as_ref()
                .map(|cause| cause.display())
                .unwrap_or_else(|| crate::protocol::pyrepr::repr(&result));
            let error = chord_error(format!("Dependency {task_id} raised {raised}"));
            return Err(ChordFailure { error, cause });
        }
        results.push(result);
    }
    Ok(results)
}

/// Celery's `celery.exceptions.ChordError`.
pub fn chord_error(message: String) -> ExceptionInfo {
    ExceptionInfo::new("ChordError", "celery.exceptions", message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_are_written_as_celery_writes_them() {
        // Captured from Celery 5.7: `[1, "f1c6…", "SUCCESS", 2]`.
        assert_eq!(
            header_entry("f1c6", &TaskState::Success, &json!(2)),
            r#"[1, "f1c6", "SUCCESS", 2]"#
        );
    }

    #[test]
    fn joins_results_or_names_the_first_failure() {
        let ok = [
            header_entry("a", &TaskState::Success, &json!(2)),
            header_entry("b", &TaskState::Success, &json!([4, "x"])),
        ];
        assert_eq!(join(&ok), Ok(vec![json!(2), json!([4, "x"])]));
        let boom =
            serde_json::to_value(ExceptionInfo::new("ValueError", "builtins", "boom")).unwrap();
        let failed = [ok[0].clone(), header_entry("b", &TaskState::Failure, &boom)];
        let failure = join(&failed).unwrap_err();
        assert_eq!(failure.error.exc_type, "ChordError");
        assert_eq!(
            failure.error.exc_message,
            vec![json!("Dependency b raised ValueError('boom')")]
        );
        assert_eq!(failure.cause.unwrap().exc_type, "ValueError");
        let junk = join(&["not json".to_owned()]).unwrap_err();
        assert!(
            junk.error.display().contains("Join error"),
            "{}",
            junk.error.display()
        );
        assert_eq!(junk.cause, None);
    }
}

//! The tasks a worker can run, by name: Celery's task registry.
//!
//! ```python
//! app.autodiscover_tasks(['celery_tasks.sms', 'celery_tasks.demo'])
//! ```
//!
//! Here the application builds a [`Registry`] itself and hands it to
//! [`worker::run`](crate::worker::run); the banner's `[tasks]` list and the
//! `registered` answer come from it. A message naming a task that is not in
//! it is logged and rejected, as Celery rejects an unregistered task.

use std::{collections::BTreeMap, sync::Arc};

use crate::task::Task;

/// Registered tasks, by Celery name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Arc<Task>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `task`; a task registered before under the same name is
    /// replaced, as re-registering a name replaces it in Celery.
    pub fn register(mut self, task: Task) -> Registry {
        self.tasks.insert(task.name().to_owned(), Arc::new(task));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Task>> {
        self.tasks.get(name)
    }

    /// The names, sorted (as Celery's banner lists them).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskResult;

    #[test]
    fn tasks_are_found_by_name_and_listed_sorted() {
        let noop = || Task::new("noop", &[], |(): ()| async { TaskResult::Ok(()) });
        let registry = Registry::new()
            .register(Task::new(
                "mul",
                &["x", "y"],
                |(x, y): (i64, i64)| async move { TaskResult::Ok(x * y) },
            ))
            .register(noop())
            .register(noop());
        assert_eq!(registry.names().collect::<Vec<_>>(), ["mul", "noop"]);
        assert!(registry.get("mul").is_some());
        assert!(registry.get("SMS").is_none());
    }
}

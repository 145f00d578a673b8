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
//!
//! A mistake in the registry — two tasks under one name, a task whose
//! parameters or defaults do not fit its body — is an error when the worker
//! starts ([`Registry::check`]), not when the first message arrives.

use std::{collections::BTreeMap, sync::Arc};

use thiserror::Error;

use crate::task::Task;

/// Registered tasks, by Celery name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Arc<Task>>,
    /// What [`Registry::check`] reports.
    problems: Vec<String>,
}

/// The registry cannot be used: each problem, on one line.
#[derive(Debug, Error)]
#[error("the app's tasks: {}", problems.join("; "))]
#[non_exhaustive]
pub struct RegistryError {
    pub problems: Vec<String>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `task`. A second task under a name already registered, or a
    /// task whose declaration is wrong, is an error at [`Registry::check`].
    pub fn register(mut self, task: Task) -> Registry {
        let name = task.name().to_owned();
        for problem in task.problems() {
            self.problems.push(format!("task '{name}': {problem}"));
        }
        if self.tasks.contains_key(&name) {
            self.problems
                .push(format!("task '{name}' is registered twice"));
        }
        self.tasks.insert(name, Arc::new(task));
        self
    }

    /// [`Registry::register`], with its problem at once.
    pub fn try_register(self, task: Task) -> Result<Registry, RegistryError> {
        let registry = self.register(task);
        registry.check()?;
        Ok(registry)
    }

    /// Every problem found while registering, as one error.
    pub fn check(&self) -> Result<(), RegistryError> {
        match self.problems.is_empty() {
            true => Ok(()),
            false => Err(RegistryError {
                problems: self.problems.clone(),
            }),
        }
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
            .register(noop());
        assert_eq!(registry.names().collect::<Vec<_>>(), ["mul", "noop"]);
        assert!(registry.get("mul").is_some());
        assert!(registry.get("SMS").is_none());
        assert!(registry.check().is_ok());
    }

    #[test]
    fn a_name_registered_twice_or_a_bad_default_is_an_error_at_start() {
        let noop = || Task::new("noop", &[], |(): ()| async { TaskResult::Ok(()) });
        let twice = Registry::new().register(noop()).register(noop());
        assert_eq!(
            twice.check().unwrap_err().to_string(),
            "the app's tasks: task 'noop' is registered twice"
        );
        let sleep = Task::new(
            "sleep",
            &["seconds='soon'"],
            |(seconds,): (f64,)| async move { TaskResult::Ok(seconds) },
        );
        let error = Registry::new().try_register(sleep).unwrap_err().to_string();
        assert!(
            error.starts_with("the app's tasks: task 'sleep': the default of 'seconds'"),
            "{error}"
        );
    }
}

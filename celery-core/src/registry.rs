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
//! Celery's built-in tasks that our worker may be sent are found too,
//! without being listed: `celery.accumulate` (the body a group gets when
//! it replaces a task). Celery's banner leaves its `celery.*` tasks out of
//! `[tasks]` as well.
//!
//! A mistake in the registry — two tasks under one name, a task whose
//! parameters or defaults do not fit its body — is an error when the worker
//! starts ([`Registry::check`]), not when the first message arrives.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock},
};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::task::{Task, TaskError, TaskResult};

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

    /// The task called `name`: a registered one, or one of Celery's
    /// built-ins.
    pub fn get(&self, name: &str) -> Option<&Arc<Task>> {
        self.tasks.get(name).or_else(|| BUILTINS.get(name))
    }

    /// The names, sorted (as Celery's banner lists them).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// Celery's built-in tasks, as its `celery/app/builtins.py` defines them.
static BUILTINS: LazyLock<BTreeMap<String, Arc<Task>>> = LazyLock::new(|| {
    [accumulate()]
        .into_iter()
        .map(|task| (task.name().to_owned(), Arc::new(task)))
        .collect()
});

/// `celery.accumulate(*args, **kwargs)`: `args[index]`, or all of `args`
/// when no `index` is given (Python's indexing: negative counts from the end).
fn accumulate() -> Task {
    Task::new(
        "celery.accumulate",
        &["*args", "**kwargs"],
        |(args, kwargs): (Vec<Value>, Map<String, Value>)| async move {
            let index = match kwargs.get("index") {
                None | Some(Value::Null) => return TaskResult::Ok(Value::Array(args)),
                Some(index) => index.as_i64().ok_or_else(|| {
                    TaskError::fail(
                        "TypeError",
                        "builtins",
                        "tuple indices must be integers or slices",
                    )
                })?,
            };
            let length = i64::try_from(args.len()).unwrap_or(i64::MAX);
            let at = if index < 0 {
                length.checked_add(index)
            } else {
                Some(index)
            };
            at.and_then(|at| usize::try_from(at).ok())
                .and_then(|at| args.get(at).cloned())
                .ok_or_else(|| {
                    TaskError::fail("IndexError", "builtins", "tuple index out of range")
                })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Celery's built-ins are found, not listed.
        assert!(registry.get("celery.accumulate").is_some());
    }

    #[tokio::test]
    async fn celery_accumulate_picks_by_index_as_python_does() {
        use crate::task::Request;
        let accumulate = accumulate();
        let args = [Value::from(1), Value::from(2), Value::from(3)];
        let call = async |index: Value| {
            let mut kwargs = Map::new();
            kwargs.insert("index".into(), index);
            let request = Request::new("id", "celery.accumulate");
            accumulate.call(request, &args, &kwargs).await
        };
        assert_eq!(call(0.into()).await, Ok(Value::from(1)));
        assert_eq!(call((-1).into()).await, Ok(Value::from(3)));
        assert_eq!(call(Value::Null).await, Ok(serde_json::json!([1, 2, 3])));
        let Err(TaskError::Fail(exception)) = call(3.into()).await else {
            panic!("index 3 of 3 arguments is out of range");
        };
        assert_eq!(exception.exc_type, "IndexError");
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

//! Why a task body did not return a value, as Celery stores it: "retry
//! later" (`self.retry(…)`) or "failed, raising this exception".
//!
//! Any Rust error becomes a failure with a Python-style type and module, so
//! Python's `AsyncResult.get()` raises something it can name:
//!
//! | Rust error | exception |
//! |---|---|
//! | `std::io::Error` of kind `NotFound`, `PermissionDenied`, `TimedOut`, … | `FileNotFoundError`, `PermissionError`, `TimeoutError`, … (`OSError` otherwise) |
//! | `ParseIntError`, `ParseFloatError`, `serde_json::Error`, UTF-8 errors | `ValueError` |
//! | `TryFromIntError` | `OverflowError` |
//! | any other, such as `reqwest::Error` | its Rust path: `Error` from module `reqwest.error` |
//!
//! A body's `?` works two ways: on the standard library's errors above
//! (they convert into [`TaskError`]), and on any error through
//! [`TaskResultExt::or_fail`] / [`TaskResultExt::or_retry`]. (A blanket
//! `From<E: Error>` is not possible while `TaskError` is an `Error` itself,
//! and a body generic over its error type would make every `Ok(…)` need a
//! type annotation.)

use std::{
    any::Any,
    error::Error,
    fmt,
    num::{ParseFloatError, ParseIntError, TryFromIntError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::Value;

use amqp_connect::report::one_line;

use crate::{backend::ExceptionInfo, canvas::Signature};

/// What a task body returns.
pub type TaskResult<T> = Result<T, TaskError>;

/// Why a task body did not return a value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskError {
    /// Run again later (Celery's `self.retry(…)`): a new message with the
    /// same id and `retries + 1`, while `max_retries` allows; after that,
    /// FAILURE with the retry's exception.
    Retry(Retry),
    /// Failed for good, raising this exception (stored as FAILURE).
    Fail(ExceptionInfo),
    /// Replaced by this signature (Celery's `self.replace(sig)`): it takes
    /// the task's id, callbacks, chain and place in a group or chord, and
    /// the task itself ends without a result (`canvas/replace.rs`). Build
    /// it with [`TaskError::replace`].
    Replace(Box<Signature>),
}

/// Celery's `self.retry(exc=…, countdown=…, eta=…, max_retries=…)`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Retry {
    /// The reason, stored as the RETRY state's result (and as the failure
    /// once retries run out).
    pub exception: ExceptionInfo,
    /// Run again after this long; with neither this nor `eta`, after the
    /// task's `default_retry_delay` (Celery's 3 minutes).
    pub countdown: Option<Duration>,
    /// Run again at this time (wins over `countdown`, as in Celery).
    pub eta: Option<DateTime<Utc>>,
    /// Overrides the task's `max_retries` for this retry: `Some(None)` is
    /// "for ever".
    pub max_retries: Option<Option<u32>>,
}

impl Retry {
    /// A retry for `exception`, at the task's default delay.
    pub fn new(exception: ExceptionInfo) -> Retry {
        Retry {
            exception,
            countdown: None,
            eta: None,
            max_retries: None,
        }
    }

    pub fn countdown(mut self, countdown: Duration) -> Retry {
        self.countdown = Some(countdown);
        self
    }

    pub fn eta(mut self, eta: DateTime<Utc>) -> Retry {
        self.eta = Some(eta);
        self
    }

    /// `max_retries=…` for this call: a number, or `None` for ever.
    pub fn max_retries(mut self, max_retries: impl Into<Option<u32>>) -> Retry {
        self.max_retries = Some(max_retries.into());
        self
    }
}

impl From<Retry> for TaskError {
    fn from(retry: Retry) -> Self {
        TaskError::Retry(retry)
    }
}

impl TaskError {
    /// Fails with an exception of type `exc_type` from module `exc_module`
    /// (`ValueError`, `builtins`) and one argument: what Python's `get()`
    /// raises.
    pub fn fail(exc_type: &str, exc_module: &str, message: impl Into<String>) -> Self {
        TaskError::Fail(ExceptionInfo::new(exc_type, exc_module, message))
    }

    /// Fails with an exception of several arguments, as Python's
    /// `raise ExpectedException("Task expected to fail", 1, 2)`.
    pub fn fail_with_args(exc_type: &str, exc_module: &str, args: Vec<Value>) -> Self {
        TaskError::Fail(ExceptionInfo {
            exc_type: exc_type.to_owned(),
            exc_message: args,
            exc_module: exc_module.to_owned(),
        })
    }

    /// Retries after `countdown`, recording `exception` as the reason. See
    /// [`Retry`] for `eta` and `max_retries`.
    pub fn retry(countdown: Duration, exception: ExceptionInfo) -> Self {
        TaskError::Retry(Retry::new(exception).countdown(countdown))
    }

    /// Celery's `return self.replace(signature)`: `return
    /// Err(TaskError::replace(signature))`. The worker sends the
    /// replacement, and the task ends there, as with Celery's `Ignore`.
    pub fn replace(signature: Signature) -> Self {
        TaskError::Replace(Box::new(signature))
    }

    /// The exception this error stores (a replaced task stores none).
    pub fn exception(&self) -> Option<&ExceptionInfo> {
        match self {
            TaskError::Retry(retry) => Some(&retry.exception),
            TaskError::Fail(exception) => Some(exception),
            TaskError::Replace(_) => None,
        }
    }

    /// Any error as a failure, named as the table above names it. A
    /// `TaskError` passes through unchanged.
    pub fn from_error<E: Error + Send + Sync + 'static>(error: E) -> TaskError {
        let mut slot = Some(error);
        if let Some(task_error) = (&mut slot as &mut dyn Any).downcast_mut::<Option<TaskError>>()
            && let Some(task_error) = task_error.take()
        {
            return task_error;
        }
        match slot {
            Some(error) => TaskError::Fail(exception_of(&error)),
            None => TaskError::fail("Exception", "builtins", "unknown error"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Fail(exception) => f.write_str(&exception.display()),
            TaskError::Retry(retry) => write!(f, "Retry: {}", retry.exception.display()),
            TaskError::Replace(signature) => write!(f, "Replaced by {}", signature.task),
        }
    }
}

impl Error for TaskError {}

/// `?` on the standard library's errors inside a [`TaskResult`] body.
macro_rules! from_std_errors {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for TaskError {
            fn from(error: $error) -> Self {
                TaskError::Fail(exception_of(&error))
            }
        }
    )*};
}

from_std_errors!(
    std::io::Error,
    ParseIntError,
    ParseFloatError,
    TryFromIntError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    serde_json::Error,
);

/// `?` on any error, in a [`TaskResult`] body.
pub trait TaskResultExt<T> {
    /// The error, if any, as a failure (see the module's table).
    fn or_fail(self) -> TaskResult<T>;
    /// The error, if any, as "retry after `countdown`" with it as the reason.
    fn or_retry(self, countdown: Duration) -> TaskResult<T>;
}

impl<T, E: Error + Send + Sync + 'static> TaskResultExt<T> for Result<T, E> {
    fn or_fail(self) -> TaskResult<T> {
        self.map_err(TaskError::from_error)
    }

    fn or_retry(self, countdown: Duration) -> TaskResult<T> {
        self.map_err(|error| match TaskError::from_error(error) {
            TaskError::Fail(exception) => TaskError::retry(countdown, exception),
            // Already a retry, or a replacement: as it was.
            other => other,
        })
    }
}

/// The exception Python would see for `error`: its type and module, and
/// its text with its causes, each said once.
fn exception_of<E: Error + 'static>(error: &E) -> ExceptionInfo {
    let (exc_type, exc_module) = python_name(error);
    ExceptionInfo::new(&exc_type, &exc_module, one_line(error))
}

fn python_name<E: Error + 'static>(error: &E) -> (String, String) {
    let builtin = |name: &str| (name.to_owned(), "builtins".to_owned());
    let any = error as &dyn Any;
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        return builtin(match io.kind() {
            NotFound => "FileNotFoundError",
            PermissionDenied => "PermissionError",
            ConnectionRefused => "ConnectionRefusedError",
            ConnectionReset => "ConnectionResetError",
            ConnectionAborted => "ConnectionAbortedError",
            TimedOut => "TimeoutError",
            BrokenPipe => "BrokenPipeError",
            AlreadyExists => "FileExistsError",
            Interrupted => "InterruptedError",
            WouldBlock => "BlockingIOError",
            _ => "OSError",
        });
    }
    if any.is::<ParseIntError>()
        || any.is::<ParseFloatError>()
        || any.is::<serde_json::Error>()
        || any.is::<std::str::Utf8Error>()
        || any.is::<std::string::FromUtf8Error>()
    {
        return builtin("ValueError");
    }
    if any.is::<TryFromIntError>() {
        return builtin("OverflowError");
    }
    rust_path(std::any::type_name::<E>())
}

/// `reqwest::error::Error` → (`Error`, `reqwest.error`); generics dropped.
fn rust_path(type_name: &str) -> (String, String) {
    let path = type_name.split('<').next().unwrap_or(type_name);
    match path.rsplit_once("::") {
        Some((module, name)) => (name.to_owned(), module.replace("::", ".")),
        None => (path.to_owned(), "builtins".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("gateway said no")]
    struct GatewayError;

    fn io_body() -> TaskResult<String> {
        let text = std::fs::read_to_string("/nonexistent/celery-core-test")?;
        Ok(text)
    }

    fn parse_body(text: &str) -> TaskResult<i64> {
        Ok(text.parse::<i64>()?)
    }

    #[test]
    fn question_mark_works_on_std_errors_in_a_task_body() {
        let Err(TaskError::Fail(exception)) = io_body() else {
            panic!("expected a failure");
        };
        assert_eq!(exception.exc_type, "FileNotFoundError");
        assert_eq!(exception.exc_module, "builtins");
        let Err(TaskError::Fail(exception)) = parse_body("x") else {
            panic!("expected a failure");
        };
        assert_eq!(exception.exc_type, "ValueError");
    }

    #[test]
    fn any_error_gets_its_rust_path_as_python_names() {
        let error = TaskError::from_error(GatewayError);
        let exception = error.exception().unwrap();
        assert_eq!(exception.exc_type, "GatewayError");
        assert_eq!(exception.exc_module, "celery_core.task.error.tests");
        assert_eq!(
            exception.exc_message,
            [Value::String("gateway said no".into())]
        );
        let retry = Err::<(), _>(GatewayError).or_retry(Duration::from_secs(5));
        assert!(
            matches!(retry, Err(TaskError::Retry(Retry { countdown: Some(d), .. })) if d == Duration::from_secs(5))
        );
    }

    #[test]
    fn a_task_error_passes_through_unchanged() {
        let original = TaskError::retry(Duration::from_secs(1), ExceptionInfo::new("E", "m", "x"));
        assert_eq!(TaskError::from_error(original.clone()), original);
        let boxed: Box<dyn Error + Send + Sync> = Box::new(original.clone());
        assert_eq!(boxed.to_string(), "Retry: E('x')");
    }

    #[test]
    fn an_exception_keeps_all_its_arguments() {
        let error = TaskError::fail_with_args(
            "ExpectedException",
            "t.integration.tasks",
            vec![
                Value::from("Task expected to fail"),
                Value::from(1),
                Value::from(2),
            ],
        );
        assert_eq!(
            error.to_string(),
            "ExpectedException('Task expected to fail', 1, 2)"
        );
    }
}

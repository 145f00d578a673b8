//! A task: a Celery name, parameter names, and a Rust body.
//!
//! ```python
//! @app.task(name='add')
//! def add(x, y):
//!     return x + y
//! ```
//!
//! is, here,
//!
//! ```
//! use celery_core::task::{Task, TaskResult};
//!
//! let add = Task::new("add", &["x", "y"], |(x, y): (i64, i64)| async move {
//!     TaskResult::Ok(x + y)
//! });
//! ```
//!
//! A Celery worker dispatches on the task's *name* (the `task` header), so
//! the name is what matters on the wire. The parameter names make `args` and
//! `kwargs` bind the way Python binds them — `add.delay(2, 3)`,
//! `add.delay(x=2, y=3)` and `add.delay(2, y=3)` all reach the body as
//! `(2, 3)`, and a wrong call fails with Python's own `TypeError` text —
//! then serde turns the bound values into the body's argument type. The
//! body returns anything `Serialize` (stored as the result, shown with
//! `repr()` in the log) or a [`TaskError`]: "retry after …" (Celery's
//! `self.retry(countdown=…)`) or "fail with this exception".
//!
//! What a task needs (an HTTP client, a connection pool) it captures: the
//! body is a closure, and nothing is global. A body that blocks or burns CPU
//! is declared with [`Task::blocking`] and runs on a bounded pool of threads
//! of its own, so it never stalls the async tasks beside it.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::backend::ExceptionInfo;

/// What a task body returns.
pub type TaskResult<T> = Result<T, TaskError>;

/// Why a task body did not return a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    /// Run again after `countdown` (Celery's `self.retry(countdown=…, exc=…)`):
    /// a new message with the same id and `retries + 1`, while the task's
    /// `max_retries` allows; after that, FAILURE with `exception`.
    Retry {
        countdown: Duration,
        exception: ExceptionInfo,
    },
    /// Failed for good, raising `exception` (stored as FAILURE).
    Fail(ExceptionInfo),
}

impl TaskError {
    /// Fails with an exception of type `exc_type` from module `exc_module`
    /// (`ValueError`, `builtins`): what Python's `get()` will raise.
    pub fn fail(exc_type: &str, exc_module: &str, message: impl Into<String>) -> Self {
        TaskError::Fail(ExceptionInfo::new(exc_type, exc_module, message))
    }

    /// Retries after `countdown`, recording `exception` as the reason.
    pub fn retry(countdown: Duration, exception: ExceptionInfo) -> Self {
        TaskError::Retry {
            countdown,
            exception,
        }
    }
}

/// What a bound task (`@app.task(bind=True)`) knows about the request it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskContext {
    /// The task id (the result's key; the same for every retry).
    pub id: String,
    /// The registered name.
    pub name: String,
    /// How many times it was retried before this run.
    pub retries: i64,
}

type AsyncBody = dyn Fn(TaskContext, Vec<Value>) -> Pin<Box<dyn Future<Output = TaskResult<Value>> + Send>>
    + Send
    + Sync;
type BlockingBody = dyn Fn(TaskContext, Vec<Value>) -> TaskResult<Value> + Send + Sync;

/// How a body runs.
#[derive(Clone)]
pub(crate) enum Body {
    /// On the worker's event loop, beside the other tasks.
    Async(Arc<AsyncBody>),
    /// On a thread of the worker's blocking pool.
    Blocking(Arc<BlockingBody>),
}

/// One registered task. Build it with [`Task::new`], [`Task::bound`] or
/// [`Task::blocking`]; register it in a [`Registry`](crate::registry::Registry).
#[derive(Clone)]
pub struct Task {
    name: String,
    /// The Python function name in `TypeError` messages (`send_sms_code()
    /// missing 1 required positional argument`); the task name if unset.
    function: String,
    parameters: Vec<String>,
    max_retries: i64,
    pub(crate) body: Body,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("parameters", &self.parameters)
            .field("blocking", &matches!(self.body, Body::Blocking(_)))
            .finish_non_exhaustive()
    }
}

/// Celery's default `max_retries`.
pub const DEFAULT_MAX_RETRIES: i64 = 3;

impl Task {
    /// An async task: `body` gets the arguments, bound by `parameters` and
    /// decoded into `A` (a tuple, one element per parameter).
    pub fn new<A, R, F, Fut>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult<R>> + Send + 'static,
    {
        Task::bound(name, parameters, move |_context, args| body(args))
    }

    /// An async task that also gets the request ([`TaskContext`]): Celery's
    /// `bind=True`.
    pub fn bound<A, R, F, Fut>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(TaskContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult<R>> + Send + 'static,
    {
        let function = name.to_owned();
        let body: Arc<AsyncBody> = Arc::new(move |context: TaskContext, bound: Vec<Value>| {
            match decode::<A>(&function, bound) {
                Ok(args) => {
                    let running = body(context, args);
                    Box::pin(async move { encode(running.await) })
                }
                Err(error) => Box::pin(std::future::ready(Err(error))),
            }
        });
        Task::with_body(name, parameters, Body::Async(body))
    }

    /// A task whose body blocks (a synchronous client, file I/O) or burns
    /// CPU: it runs on the worker's blocking pool, a bounded set of threads
    /// apart from the event loop, so the async tasks beside it go on.
    pub fn blocking<A, R, F>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(A) -> TaskResult<R> + Send + Sync + 'static,
    {
        let function = name.to_owned();
        let body: Arc<BlockingBody> = Arc::new(move |_context, bound: Vec<Value>| {
            encode(body(decode::<A>(&function, bound)?))
        });
        Task::with_body(name, parameters, Body::Blocking(body))
    }

    fn with_body(name: &str, parameters: &[&str], body: Body) -> Task {
        Task {
            name: name.to_owned(),
            function: name.to_owned(),
            parameters: parameters.iter().map(|p| (*p).to_owned()).collect(),
            max_retries: DEFAULT_MAX_RETRIES,
            body,
        }
    }

    /// Names the Python function in argument errors (the blog's `SMS` task
    /// is the function `send_sms_code`).
    pub fn function_name(mut self, function: &str) -> Task {
        function.clone_into(&mut self.function);
        self
    }

    /// Retries allowed after the first run (Celery's `max_retries`, default 3).
    pub fn max_retries(mut self, max_retries: i64) -> Task {
        self.max_retries = max_retries;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn parameters(&self) -> &[String] {
        &self.parameters
    }

    pub fn is_blocking(&self) -> bool {
        matches!(self.body, Body::Blocking(_))
    }

    pub fn allowed_retries(&self) -> i64 {
        self.max_retries
    }

    /// Runs the task on `args`/`kwargs` here and now, as the worker would
    /// but without a broker, a pool or a time limit (a blocking body runs on
    /// the calling thread): for tests, and for calling a task from Rust.
    pub async fn call(
        &self,
        request: TaskContext,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> TaskResult<Value> {
        let bound = self.bind(args, kwargs)?;
        match &self.body {
            Body::Async(body) => body(request, bound).await,
            Body::Blocking(body) => body(request, bound),
        }
    }

    /// Binds a message's `args`/`kwargs` to the parameters, as Python would.
    pub fn bind(&self, args: &[Value], kwargs: &Map<String, Value>) -> TaskResult<Vec<Value>> {
        let parameters: Vec<&str> = self.parameters.iter().map(String::as_str).collect();
        bind_arguments(&self.function, &parameters, args, kwargs).map_err(TaskError::Fail)
    }
}

/// The bound values as the body's argument type; a mismatch is the
/// `TypeError` Python would raise inside the function.
fn decode<A: DeserializeOwned>(function: &str, bound: Vec<Value>) -> TaskResult<A> {
    let empty = bound.is_empty();
    serde_json::from_value(Value::Array(bound))
        // `()` (no parameters) is JSON null to serde, not an empty list.
        .or_else(|error| match empty {
            true => serde_json::from_value(Value::Null).map_err(|_| error),
            false => Err(error),
        })
        .map_err(|error| {
            TaskError::fail(
                "TypeError",
                "builtins",
                format!("{function}() got arguments of the wrong type: {error}"),
            )
        })
}

/// A body's value as JSON, the result Celery stores.
fn encode<R: Serialize>(result: TaskResult<R>) -> TaskResult<Value> {
    let value = result?;
    serde_json::to_value(value).map_err(|error| {
        TaskError::fail(
            "EncodeError",
            "kombu.exceptions",
            format!("the task's result cannot be written as JSON: {error}"),
        )
    })
}

/// Binds Celery `args`/`kwargs` to named parameters, with Python's errors.
pub fn bind_arguments(
    function: &str,
    parameters: &[&str],
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Value>, ExceptionInfo> {
    let type_error = |text: String| ExceptionInfo::new("TypeError", "builtins", text);
    if args.len() > parameters.len() {
        return Err(type_error(format!(
            "{function}() takes {} positional arguments but {} were given",
            parameters.len(),
            args.len()
        )));
    }
    let mut bound: Vec<Option<Value>> = parameters
        .iter()
        .enumerate()
        .map(|(i, _)| args.get(i).cloned())
        .collect();
    for (name, value) in kwargs {
        match parameters.iter().position(|parameter| parameter == name) {
            None => {
                return Err(type_error(format!(
                    "{function}() got an unexpected keyword argument '{name}'"
                )));
            }
            Some(index) if bound[index].is_some() => {
                return Err(type_error(format!(
                    "{function}() got multiple values for argument '{name}'"
                )));
            }
            Some(index) => bound[index] = Some(value.clone()),
        }
    }
    let missing: Vec<String> = parameters
        .iter()
        .zip(&bound)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    if !missing.is_empty() {
        let plural = if missing.len() == 1 {
            "argument"
        } else {
            "arguments"
        };
        return Err(type_error(format!(
            "{function}() missing {} required positional {plural}: {}",
            missing.len(),
            missing.join(" and ")
        )));
    }
    Ok(bound.into_iter().flatten().collect())
}

/// `base × 2^retries`, jittered down by up to half so that many tasks failing
/// together do not all come back in the same instant (capped at an hour).
pub fn backoff(base: Duration, retries: i64, rng: &mut impl rand::Rng) -> Duration {
    let exponent = u32::try_from(retries.clamp(0, 16)).unwrap_or(16);
    let full = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600));
    full.mul_f64(rng.random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};
    use serde_json::json;

    use super::*;

    fn bind(args: Value, kwargs: Value) -> Result<Vec<Value>, String> {
        let args = args.as_array().unwrap().clone();
        let kwargs = kwargs.as_object().unwrap().clone();
        bind_arguments("send_sms_code", &["mobile", "sms_code"], &args, &kwargs)
            .map_err(|e| e.exc_message[0].as_str().unwrap().to_owned())
    }

    #[test]
    fn binds_positional_keyword_and_mixed_calls_like_python() {
        let expected = vec![json!("13800000000"), json!("1234")];
        assert_eq!(
            bind(json!(["13800000000", "1234"]), json!({})),
            Ok(expected.clone())
        );
        assert_eq!(
            bind(
                json!([]),
                json!({"sms_code": "1234", "mobile": "13800000000"})
            ),
            Ok(expected.clone())
        );
        assert_eq!(
            bind(json!(["13800000000"]), json!({"sms_code": "1234"})),
            Ok(expected)
        );
    }

    #[test]
    fn wrong_calls_get_pythons_type_errors() {
        assert_eq!(
            bind(json!(["13800000000"]), json!({})),
            Err("send_sms_code() missing 1 required positional argument: 'sms_code'".into())
        );
        assert_eq!(
            bind(json!([1, 2, 3]), json!({})),
            Err("send_sms_code() takes 2 positional arguments but 3 were given".into())
        );
        assert_eq!(
            bind(json!(["1"]), json!({"mobile": "2"})),
            Err("send_sms_code() got multiple values for argument 'mobile'".into())
        );
        assert_eq!(
            bind(json!([]), json!({"phone": "1"})),
            Err("send_sms_code() got an unexpected keyword argument 'phone'".into())
        );
    }

    fn context() -> TaskContext {
        TaskContext {
            id: "id".into(),
            name: "t".into(),
            retries: 0,
        }
    }

    fn run(task: &Task, args: Value) -> TaskResult<Value> {
        futures_lite::future::block_on(task.call(context(), args.as_array().unwrap(), &Map::new()))
    }

    #[test]
    fn arguments_are_decoded_into_the_bodys_types() {
        let add = Task::new("add", &["x", "y"], |(x, y): (i64, i64)| async move {
            TaskResult::Ok(x + y)
        });
        assert_eq!(run(&add, json!([2, 3])), Ok(json!(5)));
        let Err(TaskError::Fail(error)) = run(&add, json!(["2", 3])) else {
            panic!("a string is not an i64");
        };
        assert_eq!(error.exc_type, "TypeError");
        let xsum = Task::blocking("xsum", &["numbers"], |(numbers,): (Vec<f64>,)| {
            Ok(numbers.iter().sum::<f64>())
        });
        assert_eq!(run(&xsum, json!([[1, 2.5]])), Ok(json!(3.5)));
        let noop = Task::new("noop", &[], |(): ()| async { TaskResult::Ok(()) });
        assert_eq!(run(&noop, json!([])), Ok(Value::Null));
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = Duration::from_secs(2);
        for retries in 0..4 {
            let full = base * 2u32.pow(retries as u32);
            let delay = backoff(base, retries, &mut rng);
            assert!(delay >= full / 2 && delay <= full, "{retries}: {delay:?}");
        }
    }
}

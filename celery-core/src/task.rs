//! A task: a Celery name, its parameters, its options, and a Rust body.
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
//! `self.retry(countdown=…)`, [`Retry`]) or "fail with this exception".
//! `?` works in a body: the standard library's errors convert into a
//! failure with a Python-style exception type (`error.rs`), and any other
//! error does through [`TaskResultExt::or_fail`] (`.or_retry(countdown)`
//! to retry on it instead).
//!
//! Parameters are written as Python writes them, defaults and all:
//!
//! ```
//! use celery_core::task::{Task, TaskResult};
//!
//! // def add(x, y, z=None): return x + y + (z or 0)
//! let add = Task::new("add", &["x", "y", "z=None"], |(x, y, z): (i64, i64, Option<i64>)| async move {
//!     TaskResult::Ok(x + y + z.unwrap_or(0))
//! });
//! // def fail(*args): raise ExpectedException(*args)
//! let fail = Task::new("fail", &["*args"], |(args,): (Vec<serde_json::Value>,)| async move {
//!     TaskResult::<()>::Err(celery_core::task::TaskError::fail_with_args("ExpectedException", "t.integration.tasks", args))
//! });
//! assert!(add.problems().is_empty() && fail.problems().is_empty());
//! ```
//!
//! A bound task ([`Task::bound`]) also gets the [`Request`], Celery's
//! `self.request`: id, retries, root and parent ids, group, delivery info,
//! custom headers. Through it the task sends tasks and canvases
//! ([`Request::send`]) and stores states of its own
//! ([`Request::update_state`]); it replaces itself by returning
//! [`TaskError::replace`]. Options with Celery's names (`max_retries`,
//! `autoretry_for`, `retry_backoff`, …) are [`TaskOptions`].
//!
//! What a task needs (an HTTP client, a connection pool) it captures: the
//! body is a closure, and nothing is global. A body that blocks or burns CPU
//! is declared with [`Task::blocking`] and runs on a bounded pool of threads
//! of its own, so it never stalls the async tasks beside it.

mod error;
mod in_task;
mod options;
mod params;
mod probe;
mod request;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::backend::ExceptionInfo;

pub(crate) use in_task::{Pending, Worker, WorkerLink};

pub use error::{Retry, TaskError, TaskResult, TaskResultExt};
pub use options::TaskOptions;
pub use request::{DeliveryInfo, Request};

use params::Signature;

type AsyncBody = dyn Fn(Request, Vec<Value>) -> Pin<Box<dyn Future<Output = TaskResult<Value>> + Send>>
    + Send
    + Sync;
type BlockingBody = dyn Fn(Request, Vec<Value>) -> TaskResult<Value> + Send + Sync;

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
///
/// Parameters are written as Python writes them: `"x"`, `"z=None"`,
/// `"redis_key='redis-echo'"`, `"*args"`, `"**kwargs"` (see `params.rs`).
/// The body gets one value per named parameter, then the extra positional
/// arguments as a list (`*args`), then the extra keyword arguments as an
/// object (`**kwargs`), decoded by serde into its argument type.
#[derive(Clone)]
pub struct Task {
    name: String,
    /// The Python function name in `TypeError` messages (`send_sms_code()
    /// missing 1 required positional argument`); the task name if unset.
    function: String,
    signature: Signature,
    options: TaskOptions,
    /// What is wrong with the declaration (a bad parameter, a default of
    /// the wrong type): the registry refuses the task with it.
    problems: Vec<String>,
    pub(crate) body: Body,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("signature", &self.signature.display())
            .field("blocking", &matches!(self.body, Body::Blocking(_)))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Celery's default `max_retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

impl Task {
    /// An async task: `body` gets the arguments, bound by `parameters` and
    /// decoded into `A` (a tuple, one element per parameter), and returns
    /// a [`TaskResult`]. Inside it, `?` works on the standard library's
    /// errors and, through [`TaskResultExt::or_fail`], on any error.
    pub fn new<A, R, F, Fut>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult<R>> + Send + 'static,
    {
        Task::bound(name, parameters, move |_request, args| body(args))
    }

    /// An async task that also gets the [`Request`]: Celery's `bind=True`.
    pub fn bound<A, R, F, Fut>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(Request, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult<R>> + Send + 'static,
    {
        let function = name.to_owned();
        let body: Arc<AsyncBody> =
            Arc::new(move |request: Request, bound: Vec<Value>| {
                match decode::<A>(&function, bound) {
                    Ok(args) => {
                        let running = body(request, args);
                        Box::pin(async move { encode(running.await) })
                    }
                    Err(error) => Box::pin(std::future::ready(Err(error))),
                }
            });
        Task::with_body::<A>(name, parameters, Body::Async(body))
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
        Task::blocking_bound(name, parameters, move |_request, args| body(args))
    }

    /// A blocking task that also gets the [`Request`].
    pub fn blocking_bound<A, R, F>(name: &str, parameters: &[&str], body: F) -> Task
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(Request, A) -> TaskResult<R> + Send + Sync + 'static,
    {
        let function = name.to_owned();
        let body: Arc<BlockingBody> = Arc::new(move |request, bound: Vec<Value>| {
            encode(body(request, decode::<A>(&function, bound)?))
        });
        Task::with_body::<A>(name, parameters, Body::Blocking(body))
    }

    fn with_body<A: DeserializeOwned>(name: &str, parameters: &[&str], body: Body) -> Task {
        let mut problems = Vec::new();
        let signature = Signature::parse(parameters).unwrap_or_else(|problem| {
            problems.push(problem);
            Signature::default()
        });
        if problems.is_empty()
            && let Err(problem) = probe::check_defaults::<A>(&signature)
        {
            problems.push(problem);
        }
        Task {
            name: name.to_owned(),
            function: name.to_owned(),
            signature,
            options: TaskOptions::default(),
            problems,
            body,
        }
    }

    /// Names the Python function in argument errors (the blog's `SMS` task
    /// is the function `send_sms_code`).
    pub fn function_name(mut self, function: &str) -> Task {
        function.clone_into(&mut self.function);
        self
    }

    /// `max_retries`: a number, or `None` to retry for ever (Celery's
    /// default is 3).
    pub fn max_retries(mut self, max_retries: impl Into<Option<u32>>) -> Task {
        self.options.max_retries = max_retries.into();
        self
    }

    /// `default_retry_delay`: a retry's countdown when it names none.
    pub fn default_retry_delay(mut self, delay: Duration) -> Task {
        self.options.default_retry_delay = delay;
        self
    }

    /// `autoretry_for`: failures of these exception types (`"OSError"`,
    /// `"ConnectionRefusedError"`; `"Exception"` for all) are retried.
    pub fn autoretry_for(mut self, exc_types: &[&str]) -> Task {
        self.options.autoretry_for = exc_types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// `retry_backoff`: automatic retries wait `factor × 2^retries` seconds
    /// (Celery's `retry_backoff=True` is factor 1).
    pub fn retry_backoff(mut self, factor: u32) -> Task {
        self.options.retry_backoff = Some(factor);
        self
    }

    /// `retry_backoff_max`: the backoff's cap.
    pub fn retry_backoff_max(mut self, max: Duration) -> Task {
        self.options.retry_backoff_max = max;
        self
    }

    /// `retry_jitter`: randomize automatic retries' countdowns below the
    /// backoff (on by default).
    pub fn retry_jitter(mut self, jitter: bool) -> Task {
        self.options.retry_jitter = jitter;
        self
    }

    /// Every other option at once, Celery's names as fields:
    /// `.options(TaskOptions { rate_limit: Some("10/s".into()), ..task.task_options().clone() })`.
    pub fn options(mut self, options: TaskOptions) -> Task {
        self.options = options;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The named parameters, in order.
    pub fn parameters(&self) -> Vec<&str> {
        self.signature
            .named
            .iter()
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The signature as Python shows it: `x, y, z=None, *args, **kwargs`.
    pub fn signature(&self) -> String {
        self.signature.display()
    }

    pub fn task_options(&self) -> &TaskOptions {
        &self.options
    }

    pub fn is_blocking(&self) -> bool {
        matches!(self.body, Body::Blocking(_))
    }

    /// What is wrong with the task's declaration, if anything.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Runs the task on `args`/`kwargs` here and now, as the worker would
    /// but without a broker, a pool or a time limit (a blocking body runs on
    /// the calling thread): for tests, and for calling a task from Rust.
    pub async fn call(
        &self,
        request: Request,
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
        self.signature
            .bind(&self.function, args, kwargs)
            .map_err(|text| TaskError::Fail(ExceptionInfo::new("TypeError", "builtins", text)))
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

/// Binds Celery `args`/`kwargs` to parameters written as Python writes
/// them (`"x"`, `"z=None"`, `"*args"`), with Python's errors: what the
/// worker does before a body runs, without a task (the fuzz target's way in).
pub fn bind_arguments(
    function: &str,
    parameters: &[&str],
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Value>, ExceptionInfo> {
    let type_error = |text: String| ExceptionInfo::new("TypeError", "builtins", text);
    let signature = Signature::parse(parameters).map_err(type_error)?;
    signature.bind(function, args, kwargs).map_err(type_error)
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

    fn context() -> Request {
        Request::new("id", "t")
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

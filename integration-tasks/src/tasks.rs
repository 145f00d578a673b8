//! The tasks of Celery 5.7's `t/integration/tasks.py`, one by one, under
//! their Celery names (`t.integration.tasks.add`). Each keeps the Python
//! task's parameters, defaults included, so Celery's tests call them as
//! they call the Python ones; the Python source is above each.

use std::time::Duration;

use celery_core::{
    backend::ExceptionInfo,
    canvas::Signature,
    registry::Registry,
    task::{Request, Retry, Task, TaskError, TaskResult, TaskResultExt},
};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde_json::{Map, Value, json};

use crate::python;

/// The module the tasks live in, in Python.
pub const MODULE: &str = "t.integration.tasks";

/// `t.integration.tasks.<function>`.
fn name(function: &str) -> String {
    format!("{MODULE}.{function}")
}

/// `function.s(*args)`.
fn s(function: &str, args: Vec<Value>) -> Signature {
    Signature::new(&name(function), args)
}

/// The `ExpectedException` of the suite: equal when its arguments are.
fn expected_exception(args: Vec<Value>) -> TaskError {
    TaskError::fail_with_args("ExpectedException", MODULE, args)
}

/// Every ported task. `redis` is the suite's `get_redis_connection()`.
pub fn registry(redis: ConnectionManager) -> Registry {
    let tasks = [
        arithmetic(),
        failures(),
        lineage(),
        waiting(),
        with_redis(&redis),
        replacing(),
        sending(),
        retrying(),
    ];
    tasks
        .into_iter()
        .flatten()
        .fold(Registry::new(), Registry::register)
}

fn arithmetic() -> Vec<Task> {
    vec![
        // def identity(x): return x
        Task::new(&name("identity"), &["x"], |(x,): (Value,)| async move {
            TaskResult::Ok(x)
        }),
        // def add(x, y, z=None): return x + y + z if z else x + y
        Task::new(
            &name("add"),
            &["x", "y", "z=None"],
            |(x, y, z): (Value, Value, Value)| async move {
                let sum = python::add(&x, &y)?;
                if python::truthy(&z) {
                    return python::add(&sum, &z);
                }
                Ok(sum)
            },
        ),
        // def mul(x: int, y: int) -> int: return x * y
        Task::new(
            &name("mul"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move { python::mul(&x, &y) },
        ),
        // @shared_task(typing=False) def add_not_typed(x, y): return x + y
        Task::new(
            &name("add_not_typed"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move { python::add(&x, &y) },
        ),
        // @shared_task(ignore_result=True) def add_ignore_result(x, y)
        Task::new(
            &name("add_ignore_result"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move { python::add(&x, &y) },
        ),
        // @shared_task(ignore_result=False) def add_with_result(x, y)
        Task::new(
            &name("add_with_result"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move { python::add(&x, &y) },
        ),
        // def tsum(nums): return sum(nums)
        Task::new(
            &name("tsum"),
            &["nums"],
            |(nums,): (Vec<Value>,)| async move { python::sum(&nums) },
        ),
        // def xsum(nums): return sum(sum(num) if isinstance(num, Iterable) else num for num in nums)
        Task::new(
            &name("xsum"),
            &["nums"],
            |(nums,): (Vec<Value>,)| async move {
                let mut total = Value::from(0);
                for num in &nums {
                    let part = match num {
                        Value::Array(inner) => python::sum(inner)?,
                        other => other.clone(),
                    };
                    total = python::add(&total, &part)?;
                }
                Ok(total)
            },
        ),
        // def return_exception(e): return e, True
        Task::new(
            &name("return_exception"),
            &["e"],
            |(e,): (Value,)| async move { TaskResult::Ok(json!([e, true])) },
        ),
    ]
}

fn failures() -> Vec<Task> {
    vec![
        // def fail(*args): raise ExpectedException("Task expected to fail", *args)
        Task::new(
            &name("fail"),
            &["*args"],
            |(args,): (Vec<Value>,)| async move {
                let mut all = vec![Value::from("Task expected to fail")];
                all.extend(args);
                TaskResult::<()>::Err(expected_exception(all))
            },
        ),
        // def raise_error(*args): raise ValueError("deliberate error")
        Task::new(
            &name("raise_error"),
            &["*args"],
            |(_args,): (Vec<Value>,)| async move {
                TaskResult::<()>::Err(TaskError::fail(
                    "ValueError",
                    "builtins",
                    "deliberate error",
                ))
            },
        ),
    ]
}

fn lineage() -> Vec<Task> {
    vec![
        // @shared_task(bind=True) def ids(self, i):
        //     return self.request.root_id, self.request.parent_id, i
        Task::bound(
            &name("ids"),
            &["i"],
            |request: Request, (i,): (Value,)| async move {
                TaskResult::Ok(json!([request.root_id, request.parent_id, i]))
            },
        ),
        // @shared_task(bind=True) def collect_ids(self, res, i):
        //     return res, (self.request.root_id, self.request.parent_id, i)
        Task::bound(
            &name("collect_ids"),
            &["res", "i"],
            |request: Request, (res, i): (Value, Value)| async move {
                TaskResult::Ok(json!([res, [request.root_id, request.parent_id, i]]))
            },
        ),
        // @shared_task(bind=True) def return_priority(self, *_args):
        //     return "Priority: %s" % self.request.delivery_info['priority']
        Task::bound(
            &name("return_priority"),
            &["*_args"],
            |request: Request, (_args,): (Vec<Value>,)| async move {
                let priority = request
                    .delivery_info
                    .priority
                    .map_or_else(|| "None".to_owned(), |p| p.to_string());
                TaskResult::Ok(format!("Priority: {priority}"))
            },
        ),
        // @shared_task(bind=True) def return_request_eta(self): return self.request.eta
        Task::bound(
            &name("return_request_eta"),
            &[],
            |request: Request, (): ()| async move { TaskResult::Ok(request.eta) },
        ),
    ]
}

/// `sleep(seconds)`, Python's float seconds.
async fn sleep(seconds: f64) -> TaskResult<()> {
    let pause = Duration::try_from_secs_f64(seconds.max(0.0))
        .map_err(|error| TaskError::fail("ValueError", "builtins", error.to_string()))?;
    tokio::time::sleep(pause).await;
    Ok(())
}

fn waiting() -> Vec<Task> {
    vec![
        // def delayed_sum(numbers, pause_time=1): sleep(pause_time); return sum(numbers)
        Task::new(
            &name("delayed_sum"),
            &["numbers", "pause_time=1"],
            |(numbers, pause_time): (Vec<Value>, f64)| async move {
                sleep(pause_time).await?;
                python::sum(&numbers)
            },
        ),
        // def sleeping(i, **_): sleep(i)
        Task::new(
            &name("sleeping"),
            &["i", "**_"],
            |(i, _rest): (f64, Map<String, Value>)| async move { sleep(i).await },
        ),
        // def write_to_file_and_return_int(file_name, i):
        //     open(file_name, 'a').write(str(i) + '\n'); return i
        Task::blocking(
            &name("write_to_file_and_return_int"),
            &["file_name", "i"],
            |(file_name, i): (String, i64)| {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&file_name)?;
                writeln!(file, "{i}")?;
                TaskResult::Ok(i)
            },
        ),
        // def print_unicode(log_message='håå®ƒ valmuefrø', print_message='hiöäüß'):
        //     logger.warning(log_message); print(print_message)
        Task::new(
            &name("print_unicode"),
            &["log_message='håå®ƒ valmuefrø'", "print_message='hiöäüß'"],
            |(log_message, print_message): (String, String)| async move {
                tracing::warn!("{log_message}");
                println!("{print_message}");
                TaskResult::Ok(())
            },
        ),
    ]
}

fn with_redis(redis: &ConnectionManager) -> Vec<Task> {
    let (echo, count, group_ids, errback) =
        (redis.clone(), redis.clone(), redis.clone(), redis.clone());
    vec![
        // def redis_echo(message, redis_key="redis-echo"): rpush(redis_key, message)
        Task::new(
            &name("redis_echo"),
            &["message", "redis_key='redis-echo'"],
            move |(message, redis_key): (Value, String)| {
                let mut redis = echo.clone();
                async move {
                    let message = python::redis_bytes(&message)?;
                    redis
                        .rpush::<_, _, ()>(redis_key, message)
                        .await
                        .or_fail()?;
                    Ok(())
                }
            },
        ),
        // def redis_count(redis_key="redis-count"): incr(redis_key)
        Task::new(
            &name("redis_count"),
            &["redis_key='redis-count'"],
            move |(redis_key,): (String,)| {
                let mut redis = count.clone();
                async move {
                    redis.incr::<_, _, ()>(redis_key, 1).await.or_fail()?;
                    Ok(())
                }
            },
        ),
        // @shared_task(bind=True) def redis_echo_group_id(self, _, redis_key="redis-group-ids"):
        //     rpush(redis_key, self.request.group)
        Task::bound(
            &name("redis_echo_group_id"),
            &["_", "redis_key='redis-group-ids'"],
            move |request: Request, (_result, redis_key): (Value, String)| {
                let mut redis = group_ids.clone();
                async move {
                    let group = python::redis_bytes(&json!(request.group))?;
                    redis.rpush::<_, _, ()>(redis_key, group).await.or_fail()?;
                    Ok(())
                }
            },
        ),
        // def errback_old_style(request_id): redis_count(request_id); return request_id
        Task::new(
            &name("errback_old_style"),
            &["request_id"],
            move |(request_id,): (String,)| {
                let mut redis = errback.clone();
                async move {
                    redis.incr::<_, _, ()>(&request_id, 1).await.or_fail()?;
                    Ok(request_id)
                }
            },
        ),
    ]
}

/// `redis_echo.s()`, or `redis_echo.si(link_msg)` when there is a message.
fn echo_link(link_msg: Value) -> Signature {
    match link_msg {
        Value::Null => s("redis_echo", vec![]),
        message => s("redis_echo", vec![message]).immutable(),
    }
}

fn replacing() -> Vec<Task> {
    vec![
        // @shared_task(bind=True) def add_replaced(self, x, y):
        //     raise self.replace(add.s(x, y))
        Task::new(
            &name("add_replaced"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move {
                TaskResult::<()>::Err(TaskError::replace(s("add", vec![x, y])))
            },
        ),
        // def add_replaced_with_chain(self, x, y):
        //     raise self.replace(chain(add.s(x, y), identity.s()))
        Task::new(
            &name("add_replaced_with_chain"),
            &["x", "y"],
            |(x, y): (Value, Value)| async move {
                let chain = Signature::chain(vec![s("add", vec![x, y]), s("identity", vec![])]);
                TaskResult::<()>::Err(TaskError::replace(chain))
            },
        ),
        // def replace_with_chain(self, *args, link_msg=None):
        //     c = chain(identity.s(*args), identity.s()); c.link(redis_echo...)
        //     return self.replace(c)
        Task::new(
            &name("replace_with_chain"),
            &["*args", "link_msg=None"],
            |(args, link_msg): (Vec<Value>, Value)| async move {
                let chain = Signature::chain(vec![s("identity", args), s("identity", vec![])])
                    .link(echo_link(link_msg));
                TaskResult::<()>::Err(TaskError::replace(chain))
            },
        ),
        // def replace_with_chain_which_raises(self, *args, link_msg=None):
        //     c = chain(identity.s(*args), raise_error.s()); c.link_error(redis_echo...)
        Task::new(
            &name("replace_with_chain_which_raises"),
            &["*args", "link_msg=None"],
            |(args, link_msg): (Vec<Value>, Value)| async move {
                let chain = Signature::chain(vec![s("identity", args), s("raise_error", vec![])])
                    .link_error(echo_link(link_msg));
                TaskResult::<()>::Err(TaskError::replace(chain))
            },
        ),
        // def replace_with_empty_chain(self, *_): return self.replace(chain())
        Task::new(
            &name("replace_with_empty_chain"),
            &["*_"],
            |(_args,): (Vec<Value>,)| async move {
                TaskResult::<()>::Err(TaskError::replace(Signature::chain(vec![])))
            },
        ),
        // def replace_with_chain_which_contains_a_group(self):
        //     return self.replace(chain(add.s(1, 2), group(add.s(1), add.s(1))))
        Task::new(
            &name("replace_with_chain_which_contains_a_group"),
            &[],
            |(): ()| async move {
                let group =
                    Signature::group(vec![s("add", vec![json!(1)]), s("add", vec![json!(1)])]);
                let chain = Signature::chain(vec![s("add", vec![json!(1), json!(2)]), group]);
                TaskResult::<()>::Err(TaskError::replace(chain))
            },
        ),
        // def fail_replaced(self, *args): raise self.replace(fail.si(*args))
        Task::new(
            &name("fail_replaced"),
            &["*args"],
            |(args,): (Vec<Value>,)| async move {
                TaskResult::<()>::Err(TaskError::replace(s("fail", args).immutable()))
            },
        ),
        // def add_to_all(self, nums, val):
        //     raise self.replace(group(*[add.s(num, val) for num in nums]))
        Task::new(
            &name("add_to_all"),
            &["nums", "val"],
            |(nums, val): (Vec<Value>, Value)| async move {
                let adds = nums
                    .into_iter()
                    .map(|num| s("add", vec![num, val.clone()]))
                    .collect();
                TaskResult::<()>::Err(TaskError::replace(Signature::group(adds)))
            },
        ),
        // def second_order_replace1(self, state=False): …
        second_order_replace("second_order_replace1", "In A", "Out A", |state_true| {
            vec![s("second_order_replace2", vec![]), state_true]
        }),
        // def second_order_replace2(self, state=False): …
        second_order_replace("second_order_replace2", "In B", "Out B", |state_true| {
            vec![s("redis_echo", vec![json!("In/Out C")]), state_true]
        }),
    ]
}

/// `second_order_replace1` and `2`: push `inside`, then replace itself with
/// a chain ending in itself with `state=True`, which pushes `outside`.
/// (They push with a connection of their own, as the Python tasks do.)
fn second_order_replace(
    function: &'static str,
    inside: &'static str,
    outside: &'static str,
    chain: fn(Signature) -> Vec<Signature>,
) -> Task {
    Task::new(
        &name(function),
        &["state=False"],
        move |(state,): (bool,)| async move {
            let mut redis = crate::redis_connection().await.or_fail()?;
            if state {
                redis
                    .rpush::<_, _, ()>("redis-echo", outside)
                    .await
                    .or_fail()?;
                return Ok(());
            }
            redis
                .rpush::<_, _, ()>("redis-echo", inside)
                .await
                .or_fail()?;
            let again = s(function, vec![]).with_kwarg("state", true).immutable();
            Err(TaskError::replace(Signature::chain(chain(again))))
        },
    )
}

fn sending() -> Vec<Task> {
    vec![
        // def chain_add(x, y): (add.s(x, x) | add.s(y)).apply_async()
        Task::bound(
            &name("chain_add"),
            &["x", "y"],
            |request: Request, (x, y): (Value, Value)| async move {
                let chain = Signature::chain(vec![s("add", vec![x.clone(), x]), s("add", vec![y])]);
                request.send(chain).await?;
                TaskResult::Ok(())
            },
        ),
        // def chord_add(x, y): chord(add.s(x, x), add.s(y)).apply_async()
        Task::bound(
            &name("chord_add"),
            &["x", "y"],
            |request: Request, (x, y): (Value, Value)| async move {
                let chord = Signature::chord(vec![s("add", vec![x.clone(), x])], s("add", vec![y]));
                request.send(chord).await?;
                TaskResult::Ok(())
            },
        ),
    ]
}

fn retrying() -> Vec<Task> {
    vec![
        // @shared_task(bind=True, expires=120.0, max_retries=1)
        // def retry_once(self, *args, expires=None, max_retries=1, countdown=0.1):
        //     if self.request.retries: return self.request.retries
        //     raise self.retry(countdown=countdown, expires=expires, max_retries=max_retries)
        Task::bound(
            &name("retry_once"),
            &["*args", "expires=None", "max_retries=1", "countdown=0.1"],
            |request: Request,
             (_args, _expires, max_retries, countdown): (
                Vec<Value>,
                Value,
                Option<u32>,
                Option<f64>,
            )| async move {
                if request.retries > 0 {
                    return Ok(request.retries);
                }
                // countdown=None: the task's default_retry_delay, as in Celery.
                let retry = match countdown {
                    Some(seconds) => {
                        let countdown =
                            Duration::try_from_secs_f64(seconds.max(0.0)).map_err(|error| {
                                TaskError::fail("ValueError", "builtins", error.to_string())
                            })?;
                        let reason = ExceptionInfo::new(
                            "Retry",
                            "celery.exceptions",
                            format!("Retry in {seconds}s"),
                        );
                        Retry::new(reason).countdown(countdown)
                    }
                    None => Retry::new(ExceptionInfo::new("Retry", "celery.exceptions", "Retry")),
                };
                Err(retry.max_retries(max_retries).into())
            },
        )
        .max_retries(1),
    ]
}

//! The tasks this worker can run, and the blog's `SMS` task itself.
//!
//! ```python
//! @celery_app.task(name='SMS')
//! def send_sms_code(mobile, sms_code):
//!     CCP().send_template_sms(mobile, [sms_code, 5], 1)
//! ```
//!
//! A Celery worker dispatches on the `task` header — the *registered name*,
//! `SMS` — so the Rust function can be called anything; what matters is the
//! name and the argument list. [`Registry::run`] binds `args`/`kwargs` to the
//! parameters the way Python would (`delay(m, c)`, `delay(mobile=m,
//! sms_code=c)` and `delay(m, sms_code=c)` all work, and a wrong call fails
//! with Python's `TypeError` text), then runs the task.
//!
//! What the Rust task adds to the blog's three lines:
//!
//! * **Validation**: a malformed number or code fails at once (FAILURE,
//!   `ValueError`), with no retry — retrying cannot make `12` a phone number.
//! * **Retries for gateway trouble**: a timeout or an error answer is retried
//!   up to [`MAX_RETRIES`] times with exponential backoff and jitter, the way
//!   `self.retry(countdown=…)` does it: a new message with the same id.
//! * **Idempotency**: at-least-once delivery means a task can arrive twice
//!   (its worker died after sending the SMS but before the ack). A record per
//!   task id in Redis, written after a successful send, makes the second run
//!   a no-op instead of a second text message to the user.

use std::time::Duration;

use rand::Rng;
use redis::AsyncCommands;
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::{
    backend::ExceptionInfo,
    broker::redis::is_connection_error,
    protocol::TaskMessage,
    redis_connection::RedisConnection,
    sms::{Gateway, GatewayError},
};

/// Retries after the first attempt, at most (Celery's `max_retries`).
pub const MAX_RETRIES: i64 = 3;
/// How long a "sent" record lives: longer than any redelivery could take.
const SENT_RECORD_TTL: Duration = Duration::from_secs(86_400);
/// The blog's template: "your code is {1}, valid for {2} minutes", id 1.
const TEMPLATE_ID: &str = "1";
const CODE_VALID_MINUTES: &str = "5";

/// How a task run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// Returned a value (`None` → JSON null).
    Success(Value),
    /// Failed for good.
    Failure(ExceptionInfo),
    /// Failed for now: run again after `countdown`.
    Retry {
        exception: ExceptionInfo,
        countdown: Duration,
    },
}

/// The registered tasks and what they need (the SMS gateway, the Redis
/// connection for "already sent" records).
#[derive(Debug, Clone)]
pub struct Registry {
    gateway: Gateway,
    sent_records: Option<RedisConnection>,
    retry_backoff: Duration,
}

impl Registry {
    /// Task names, as the worker banner lists them.
    pub const NAMES: [&'static str; 2] = ["SMS", "noop"];

    /// `sent_records`: where the SMS task remembers what it sent (`None`
    /// disables the idempotency guard). `retry_backoff`: the first retry's
    /// delay; each later one doubles it.
    pub fn new(
        gateway: Gateway,
        sent_records: Option<RedisConnection>,
        retry_backoff: Duration,
    ) -> Self {
        Self {
            gateway,
            sent_records,
            retry_backoff,
        }
    }

    pub fn is_registered(name: &str) -> bool {
        Self::NAMES.contains(&name)
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Runs the task the message names. Unknown names are the caller's to
    /// reject before this (see [`Registry::is_registered`]).
    pub async fn run(&self, message: &TaskMessage) -> TaskOutcome {
        match message.headers.task.as_str() {
            // Boxed: the HTTP call makes this future large, and an inlined large
            // future is copied on every spawn of every task, SMS or not.
            "SMS" => Box::pin(self.send_sms_code(message)).await,
            // The benchmark's task: `@celery_app.task(name='noop') def noop(): pass`.
            "noop" => TaskOutcome::Success(Value::Null),
            other => TaskOutcome::Failure(ExceptionInfo::new(
                "NotRegistered",
                "celery.exceptions",
                format!("'{other}'"),
            )),
        }
    }

    /// `send_sms_code(mobile, sms_code)`.
    async fn send_sms_code(&self, message: &TaskMessage) -> TaskOutcome {
        let arguments = match bind_arguments(
            "send_sms_code",
            &["mobile", "sms_code"],
            &message.args,
            &message.kwargs,
        ) {
            Ok(arguments) => arguments,
            Err(exception) => return TaskOutcome::Failure(exception),
        };
        let (mobile, code) = match (
            as_text("mobile", &arguments[0]),
            as_text("sms_code", &arguments[1]),
        ) {
            (Ok(mobile), Ok(code)) => (mobile, code),
            (Err(exception), _) | (_, Err(exception)) => return TaskOutcome::Failure(exception),
        };
        if let Err(exception) = validate(&mobile, &code) {
            return TaskOutcome::Failure(exception);
        }
        let task_id = &message.headers.id;
        if self.already_sent(task_id).await {
            info!(
                task_id,
                "SMS for this task was already sent; not sending it again"
            );
            return TaskOutcome::Success(Value::Null);
        }
        let datas = [code, CODE_VALID_MINUTES.to_owned()];
        match self
            .gateway
            .send_template_sms(&mobile, &datas, TEMPLATE_ID)
            .await
        {
            Ok(_receipt) => {
                self.record_sent(task_id).await;
                TaskOutcome::Success(Value::Null)
            }
            Err(error) => self.gateway_failure(&error, message.headers.retries),
        }
    }

    fn gateway_failure(&self, error: &GatewayError, retries: i64) -> TaskOutcome {
        let exception = ExceptionInfo::new(
            "GatewayError",
            "celery_tasks.sms.yuntongxun",
            error.to_string(),
        );
        if error.is_retryable() && retries < MAX_RETRIES {
            TaskOutcome::Retry {
                exception,
                countdown: backoff(self.retry_backoff, retries, &mut rand::rng()),
            }
        } else {
            TaskOutcome::Failure(exception)
        }
    }

    async fn already_sent(&self, task_id: &str) -> bool {
        let Some(records) = &self.sent_records else {
            return false;
        };
        let read = records.manager().exists::<_, bool>(sent_key(task_id)).await;
        match read {
            Ok(sent) => {
                records.watch().ok();
                sent
            }
            Err(error) => {
                // Without the record we cannot know; sending twice beats never.
                // An outage is logged once, by the watch; a refusal each time.
                if is_connection_error(&error) {
                    records.watch().lost(&error);
                } else {
                    warn!(%error, "cannot read the sent-SMS record; sending anyway");
                }
                false
            }
        }
    }

    async fn record_sent(&self, task_id: &str) {
        let Some(records) = &self.sent_records else {
            return;
        };
        let written: redis::RedisResult<()> = records
            .manager()
            .set_ex(sent_key(task_id), 1, SENT_RECORD_TTL.as_secs())
            .await;
        match written {
            Ok(()) => {
                records.watch().ok();
            }
            Err(error) => {
                if is_connection_error(&error) {
                    records.watch().lost(&error);
                } else {
                    warn!(%error, "cannot record the sent SMS; a redelivery would send it again");
                }
            }
        }
    }
}

/// The "already sent" record of a task.
pub fn sent_key(task_id: &str) -> String {
    format!("sms-sent-{task_id}")
}

/// `base × 2^retries`, jittered down by up to half so that many tasks failing
/// together do not all come back in the same instant.
pub fn backoff(base: Duration, retries: i64, rng: &mut impl Rng) -> Duration {
    let exponent = u32::try_from(retries.clamp(0, 16)).unwrap_or(16);
    let full = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600));
    full.mul_f64(rng.random_range(0.5..=1.0))
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

/// A phone number or code may come as a string or (from a careless caller)
/// as an integer; anything else is a type error.
fn as_text(name: &str, value: &Value) -> Result<String, ExceptionInfo> {
    match value {
        Value::String(text) => Ok(text.trim().to_owned()),
        Value::Number(number) if number.is_u64() => Ok(number.to_string()),
        other => Err(ExceptionInfo::new(
            "TypeError",
            "builtins",
            format!(
                "{name} must be a string, got {}",
                crate::protocol::pyrepr::repr(other)
            ),
        )),
    }
}

/// A mainland China mobile number (the blog's users) and a 4–8 digit code.
pub fn validate(mobile: &str, code: &str) -> Result<(), ExceptionInfo> {
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let national = mobile.strip_prefix("+86").unwrap_or(mobile);
    let mobile_ok = national.len() == 11
        && digits(national)
        && national.starts_with('1')
        && matches!(national.as_bytes()[1], b'3'..=b'9');
    if !mobile_ok {
        return Err(ExceptionInfo::new(
            "ValueError",
            "builtins",
            format!(
                "invalid mobile number '{}': expected 11 digits starting with 13-19, e.g. 13800000000",
                abbreviated(mobile)
            ),
        ));
    }
    if !(digits(code) && (4..=8).contains(&code.len())) {
        return Err(ExceptionInfo::new(
            "ValueError",
            "builtins",
            format!(
                "invalid SMS code '{}': expected 4 to 8 digits, e.g. 123456",
                abbreviated(code)
            ),
        ));
    }
    Ok(())
}

/// A bad value as an error message shows it (a 200 KB "code" is cut).
fn abbreviated(value: &str) -> String {
    crate::protocol::pyrepr::abbreviate(value, 24)
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

    #[test]
    fn validates_numbers_and_codes() {
        assert!(validate("13800000000", "123456").is_ok());
        assert!(validate("+8613800000000", "1234").is_ok());
        for (mobile, code) in [
            ("12", "123456"),
            ("12800000000", "1234"),
            ("1380000000a", "1234"),
            ("13800000000", "12"),
            ("13800000000", "12a4"),
        ] {
            assert!(validate(mobile, code).is_err(), "{mobile} {code}");
        }
        let huge = "9".repeat(200_000);
        let message = validate("13800000000", &huge).unwrap_err().exc_message[0].to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("999… (200000 characters)"), "{message}");
    }

    #[test]
    fn only_retryable_gateway_errors_are_retried() {
        let registry = Registry::new(
            Gateway::Console(Default::default()),
            None,
            Duration::from_secs(1),
        );
        let busy = GatewayError::Rejected {
            status_code: "160038".into(),
            status_msg: "too frequent".into(),
        };
        assert!(matches!(
            registry.gateway_failure(&busy, 0),
            TaskOutcome::Retry { .. }
        ));
        assert!(matches!(
            registry.gateway_failure(&busy, MAX_RETRIES),
            TaskOutcome::Failure(_)
        ));
        let no_such_template = GatewayError::Rejected {
            status_code: "112311".into(),
            status_msg: "模板不存在".into(),
        };
        match registry.gateway_failure(&no_such_template, 0) {
            TaskOutcome::Failure(exception) => {
                assert_eq!(exception.exc_type, "GatewayError");
                assert!(exception.display().contains("112311"), "{exception:?}");
            }
            other => panic!("a missing template must not be retried: {other:?}"),
        }
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

//! The blog's `SMS` task, registered with `celery-core`.
//!
//! ```python
//! @celery_app.task(name='SMS')
//! def send_sms_code(mobile, sms_code):
//!     CCP().send_template_sms(mobile, [sms_code, 5], 1)
//! ```
//!
//! A Celery worker dispatches on the task's *registered name*, `SMS`, so the
//! Rust function can be called anything; what matters is the name and the
//! parameters (`mobile`, `sms_code`), which bind `args`/`kwargs` the way
//! Python would. What the Rust task adds to the blog's three lines:
//!
//! * **Validation**: a malformed number or code fails at once (FAILURE,
//!   `ValueError`), with no retry — retrying cannot make `12` a phone number.
//! * **Retries for gateway trouble**: a timeout or a transient refusal is
//!   retried up to [`MAX_RETRIES`] times with exponential backoff and jitter,
//!   the way `self.retry(countdown=…)` does it: a new message with the same
//!   id. A refusal of the request itself (a bad template) is not retried.
//! * **Idempotency**: at-least-once delivery means a task can arrive twice
//!   (its worker died after sending the SMS but before the ack). A record per
//!   task id in Redis, written after a successful send, makes the second run
//!   a no-op instead of a second text message to the user.

use std::{sync::Arc, time::Duration};

use celery_core::{
    backend::ExceptionInfo,
    protocol::pyrepr,
    redis_connection::{RedisConnection, is_connection_error},
    task::{Request, Task, TaskError, TaskResult, backoff},
};
use redis::AsyncCommands;
use serde_json::Value;
use tracing::{info, warn};

use crate::sms::{Gateway, GatewayError};

/// Retries after the first attempt, at most (Celery's `max_retries`).
pub const MAX_RETRIES: u32 = 3;
/// How long a "sent" record lives: longer than any redelivery could take.
const SENT_RECORD_TTL: Duration = Duration::from_secs(86_400);
/// The blog's template: "your code is {1}, valid for {2} minutes", id 1.
const TEMPLATE_ID: &str = "1";
const CODE_VALID_MINUTES: &str = "5";

/// What the SMS task needs: the gateway, the Redis for "already sent"
/// records (`None` disables the guard), the first retry's delay (each later
/// one doubles it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SmsTask {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Gateway,
    sent_records: Option<RedisConnection>,
    retry_backoff: Duration,
}

impl SmsTask {
    pub fn new(
        gateway: Gateway,
        sent_records: Option<RedisConnection>,
        retry_backoff: Duration,
    ) -> SmsTask {
        SmsTask {
            inner: Arc::new(Inner {
                gateway,
                sent_records,
                retry_backoff,
            }),
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// The task to register: `SMS`, the function `send_sms_code(mobile, sms_code)`.
    pub fn task(self) -> Task {
        Task::bound(
            "SMS",
            &["mobile", "sms_code"],
            move |request: Request, (mobile, code): (Value, Value)| {
                let sms = self.clone();
                // Boxed: the HTTP call makes this future large, and an inlined
                // large future is copied on every spawn of every task.
                Box::pin(async move { sms.send_sms_code(request, mobile, code).await })
            },
        )
        .function_name("send_sms_code")
        .max_retries(MAX_RETRIES)
    }

    /// `send_sms_code(mobile, sms_code)`.
    async fn send_sms_code(&self, request: Request, mobile: Value, code: Value) -> TaskResult<()> {
        let (mobile, code) = (as_text("mobile", &mobile)?, as_text("sms_code", &code)?);
        validate(&mobile, &code).map_err(TaskError::Fail)?;
        let task_id = &request.id;
        if self.already_sent(task_id).await {
            info!(
                task_id,
                "SMS for this task was already sent; not sending it again"
            );
            return Ok(());
        }
        let datas = [code, CODE_VALID_MINUTES.to_owned()];
        match self
            .inner
            .gateway
            .send_template_sms(&mobile, &datas, TEMPLATE_ID)
            .await
        {
            Ok(_receipt) => {
                self.record_sent(task_id).await;
                Ok(())
            }
            Err(error) => Err(self.gateway_failure(&error, request.retries)),
        }
    }

    /// A retry after the backoff if the error is worth one (the worker
    /// turns it into FAILURE once `max_retries` are spent), else a failure.
    fn gateway_failure(&self, error: &GatewayError, retries: i64) -> TaskError {
        let exception = ExceptionInfo::new(
            "GatewayError",
            "celery_tasks.sms.yuntongxun",
            error.to_string(),
        );
        if error.is_retryable() {
            let countdown = backoff(self.inner.retry_backoff, retries, &mut rand::rng());
            TaskError::retry(countdown, exception)
        } else {
            TaskError::Fail(exception)
        }
    }

    async fn already_sent(&self, task_id: &str) -> bool {
        let Some(records) = &self.inner.sent_records else {
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
        let Some(records) = &self.inner.sent_records else {
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

/// A phone number or code may come as a string or (from a careless caller)
/// as an integer; anything else is a type error.
fn as_text(name: &str, value: &Value) -> TaskResult<String> {
    match value {
        Value::String(text) => Ok(text.trim().to_owned()),
        Value::Number(number) if number.is_u64() => Ok(number.to_string()),
        other => Err(TaskError::fail(
            "TypeError",
            "builtins",
            format!("{name} must be a string, got {}", pyrepr::repr(other)),
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
    pyrepr::abbreviate(value, 24)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let sms = SmsTask::new(
            Gateway::Console(Default::default()),
            None,
            Duration::from_secs(1),
        );
        let busy = GatewayError::Rejected {
            status_code: "160038".into(),
            status_msg: "too frequent".into(),
        };
        assert!(matches!(sms.gateway_failure(&busy, 0), TaskError::Retry(_)));
        let no_such_template = GatewayError::Rejected {
            status_code: "112311".into(),
            status_msg: "模板不存在".into(),
        };
        match sms.gateway_failure(&no_such_template, 0) {
            TaskError::Fail(exception) => {
                assert_eq!(exception.exc_type, "GatewayError");
                assert!(exception.display().contains("112311"), "{exception:?}");
            }
            other => panic!("a missing template must not be retried: {other:?}"),
        }
    }

    #[test]
    fn the_task_is_sms_with_pythons_function_name_and_retries() {
        let task = SmsTask::new(
            Gateway::Console(Default::default()),
            None,
            Duration::from_secs(1),
        )
        .task();
        assert_eq!(task.name(), "SMS");
        assert_eq!(task.parameters(), ["mobile", "sms_code"]);
        assert_eq!(task.task_options().max_retries, Some(MAX_RETRIES));
        let error = task.bind(&[serde_json::json!("13800000000")], &Default::default());
        let Err(TaskError::Fail(error)) = error else {
            panic!("one argument for two parameters");
        };
        assert_eq!(
            error.exc_message[0],
            "send_sms_code() missing 1 required positional argument: 'sms_code'"
        );
    }
}

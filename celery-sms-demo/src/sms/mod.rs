//! SMS gateways: the Rust side of the blog's `CCP().send_template_sms(mobile, [sms_code, 5], 1)`.
//!
//! The blog's Celery task does one thing: hand a phone number, the template data (the code
//! and "valid for 5 minutes") and a template id to the Ronglian (容联云通讯) SDK. The worker
//! in this crate does the same through [`Gateway::send_template_sms`].
//!
//! # Layout
//!
//! - [`console`]: prints the SMS it would send. The default, so the tutorial runs with no
//!   account, no network and no cost.
//! - [`ronglian`]: the real Ronglian template-SMS REST call, signed exactly like the
//!   `CCPRestSDK.py` the blog's `CCP` class wraps.
//!
//! # Why an enum and not a trait object
//!
//! There are exactly two gateways and both are known at compile time. An enum keeps
//! `send_template_sms` a plain `async fn` (no boxed futures, no `async_trait`), is `Clone`
//! and `Debug` for free, and a `match` makes adding a third gateway a compile error at every
//! place that has to care.
//!
//! # What is retryable
//!
//! [`GatewayError::is_retryable`] decides whether the task tries again (at most 3 times, with
//! backoff). A timeout, a connection that failed, a 5xx, a 429 or a garbled answer may well
//! be gone on the next attempt: retried. A refusal that names the request itself — an unknown
//! or mismatched template, a malformed number, a blacklisted number, an application not
//! allowed to send SMS, any other 4xx on this fixed, signed request — would be refused the
//! same way three more times, each a wasted request and a delay before the task reports what
//! is wrong: not retried. Ronglian status codes we do not know are retried, since giving up on
//! a transient one costs a user their login code. Configuration errors
//! ([`GatewayConfigError`]) are different again: they are reported once at start-up and the
//! worker refuses to run.

pub mod console;
pub mod ronglian;

use thiserror::Error;

/// Which gateway the worker uses, picked by env `SMS_GATEWAY` = `console` (default) | `ronglian`.
#[derive(Debug, Clone)]
pub enum Gateway {
    /// Logs the message instead of sending it.
    Console(console::ConsoleGateway),
    /// Sends through Ronglian's template-SMS REST API.
    Ronglian(ronglian::RonglianGateway),
}

impl Gateway {
    /// Reads `SMS_GATEWAY` and, for `ronglian`, `RONGLIAN_ACCOUNT_SID`, `RONGLIAN_AUTH_TOKEN`,
    /// `RONGLIAN_APP_ID`, `RONGLIAN_BASE_URL` (default `https://app.cloopen.com:8883`) and
    /// `RONGLIAN_TIMEOUT_SECS` (default 10).
    ///
    /// Missing or invalid configuration is a [`GatewayConfigError`] whose message is one line
    /// naming the variable and what to set it to.
    pub fn from_env() -> Result<Self, GatewayConfigError> {
        // A variable that is not valid UTF-8 is treated as unset: every value we read is
        // ASCII, and "is not set" points at the right variable either way.
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Gateway::from_env`] with the environment replaced by `lookup`, so that tests can
    /// feed configurations without mutating the process environment (tests run in parallel).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayConfigError> {
        let choice = lookup(SMS_GATEWAY).unwrap_or_default();
        match choice.trim().to_ascii_lowercase().as_str() {
            // Unset or empty means the safe default: nothing leaves the machine.
            "" | "console" => Ok(Gateway::Console(console::ConsoleGateway::default())),
            "ronglian" => {
                let config = ronglian::RonglianConfig::from_lookup(lookup)?;
                Ok(Gateway::Ronglian(ronglian::RonglianGateway::new(config)?))
            }
            _ => Err(GatewayConfigError::UnknownGateway { value: choice }),
        }
    }

    /// The gateway's name as written in `SMS_GATEWAY`: `"console"` or `"ronglian"`.
    pub fn name(&self) -> &'static str {
        match self {
            Gateway::Console(_) => "console",
            Gateway::Ronglian(_) => "ronglian",
        }
    }

    /// The blog's `CCP().send_template_sms(to, datas, temp_id)`: send template `template_id`
    /// to the mobile number `to`, filling the template's placeholders `{1}`, `{2}`, ... with
    /// `datas` in order (the blog passes `[sms_code, 5]`).
    pub async fn send_template_sms(
        &self,
        to: &str,
        datas: &[String],
        template_id: &str,
    ) -> Result<SmsReceipt, GatewayError> {
        match self {
            Gateway::Console(gateway) => gateway.send_template_sms(to, datas, template_id).await,
            Gateway::Ronglian(gateway) => gateway.send_template_sms(to, datas, template_id).await,
        }
    }
}

/// The environment variable that picks the gateway.
pub const SMS_GATEWAY: &str = "SMS_GATEWAY";

/// What a gateway hands back when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReceipt {
    /// The gateway's id for the message (Ronglian's `smsMessageSid`), if it gave one. The
    /// console gateway sends nothing, so it has none.
    pub message_id: Option<String>,
}

/// The gateway configuration is missing or wrong. Each message is a single line that names
/// the variable and says what to set, because it is the first thing a tutorial reader sees
/// when they switch to the real gateway.
///
/// Values are echoed back for every variable except the auth token, which is never shown.
#[derive(Debug, Error)]
pub enum GatewayConfigError {
    /// `SMS_GATEWAY` holds something other than `console` or `ronglian`.
    #[error(
        "SMS_GATEWAY={value:?} is not a known gateway: set SMS_GATEWAY to \"console\" (the default) or \"ronglian\""
    )]
    UnknownGateway {
        /// What the variable held.
        value: String,
    },
    /// A variable the chosen gateway needs is unset or empty.
    #[error("{var} is not set: {hint}")]
    Missing {
        /// The variable's name.
        var: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var}={value:?} is invalid: {hint}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// What it held (never used for the auth token).
        value: String,
        /// What to set it to.
        hint: &'static str,
    },
    /// The HTTP client could not be built (e.g. the TLS setup failed).
    #[error("could not build the HTTP client for the {gateway} SMS gateway: {reason}")]
    HttpClient {
        /// Which gateway needed the client.
        gateway: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// Sending one SMS failed. None of the messages contains the Ronglian auth token.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// No complete answer within the configured timeout (`RONGLIAN_TIMEOUT_SECS`).
    #[error("the SMS gateway did not answer in time")]
    Timeout,
    /// The request did not get through: DNS, connection refused, TLS, connection reset.
    #[error("could not reach the SMS gateway: {0}")]
    Transport(String),
    /// The gateway answered with a non-2xx HTTP status.
    #[error("the SMS gateway answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The gateway understood the request and refused it (Ronglian `statusCode` other than
    /// `"000000"`): wrong credentials or signature, unknown template, bad number, no balance, rate limit...
    #[error("the SMS gateway rejected the message: statusCode {status_code}: {status_msg}")]
    Rejected {
        /// The gateway's status code, e.g. `"112300"`.
        status_code: String,
        /// The gateway's explanation (may be empty).
        status_msg: String,
    },
    /// The gateway answered 2xx with something that is not the expected JSON.
    #[error("the SMS gateway's answer could not be understood: {0}")]
    BadResponse(String),
}

/// Ronglian `statusCode`s that mean "this request will never be accepted": a bad template,
/// number or content, or an account or application that is not set up to send it. Retrying
/// cannot change the answer. (Codes from Ronglian's published list of SMS return codes.)
const PERMANENT_REFUSALS: &[(&str, &str)] = &[
    ("112300", "the receiving number is empty"),
    ("112301", "the SMS text is empty"),
    ("112303", "the application has no SMS service"),
    ("112304", "the SMS text could not be encoded"),
    (
        "112305",
        "the application is not online; it may only send to its test numbers",
    ),
    ("112306", "the number of a template SMS is empty"),
    ("112307", "the template id is empty"),
    ("112308", "the template data is empty"),
    ("112309", "the template text could not be encoded"),
    (
        "112310",
        "the application is not online; it may only send to its test numbers",
    ),
    ("112311", "the template does not exist"),
    ("160031", "the request could not be parsed"),
    ("160032", "the template is not valid"),
    ("160033", "the text contains blocked words"),
    ("160034", "the number is on the blacklist"),
    ("160035", "the SMS text is empty"),
    ("160036", "the template type is unknown"),
    ("160037", "the SMS is too long"),
    (
        "160039",
        "the daily limit for this template and number is reached",
    ),
    (
        "160040",
        "the daily limit of codes for this template and number is reached",
    ),
    (
        "160041",
        "the daily limit of notices for this template and number is reached",
    ),
    ("160042", "the number is malformed"),
    ("160043", "the template does not belong to this application"),
];

impl GatewayError {
    /// Whether the task should try again (it retries up to 3 times with backoff); see the
    /// module documentation for the policy.
    ///
    /// The match has no wildcard, so that a new variant has to state its policy here.
    pub fn is_retryable(&self) -> bool {
        match self {
            // The gateway or the network was slow; the next attempt may be quick. The
            // message may also have been sent anyway: a duplicate code is the lesser evil
            // compared with no code at all.
            GatewayError::Timeout => true,
            // Connection refused/reset, DNS hiccups: the classic transient failures.
            GatewayError::Transport(_) => true,
            // 5xx is the gateway's own trouble, 408 and 429 say "later"; any other 4xx
            // refuses this very request (a wrong base URL or path, a bad request).
            GatewayError::Http { status } => *status >= 500 || matches!(status, 408 | 425 | 429),
            // Rate limits (160038), "sending failed" (160050), a signature timestamp outside
            // the gateway's window: worth another try. The request's own faults are not.
            GatewayError::Rejected { status_code, .. } => refusal_reason(status_code).is_none(),
            // A truncated or garbled answer, often from a proxy: try again.
            GatewayError::BadResponse(_) => true,
        }
    }
}

/// What a permanent Ronglian refusal means, if `status_code` is one.
pub fn refusal_reason(status_code: &str) -> Option<&'static str> {
    PERMANENT_REFUSALS
        .iter()
        .find(|(code, _)| *code == status_code)
        .map(|(_, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup_in(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn console_is_the_default() {
        let gateway = Gateway::from_lookup(lookup_in(&[])).unwrap();
        assert_eq!(gateway.name(), "console");
        let gateway = Gateway::from_lookup(lookup_in(&[("SMS_GATEWAY", " Console ")])).unwrap();
        assert_eq!(gateway.name(), "console");
    }

    #[test]
    fn ronglian_is_picked_when_configured() {
        let gateway = Gateway::from_lookup(lookup_in(&[
            ("SMS_GATEWAY", "ronglian"),
            ("RONGLIAN_ACCOUNT_SID", "8aaf0708697b6beb0169c1f12db32e2a"),
            ("RONGLIAN_AUTH_TOKEN", "secret-token"),
            ("RONGLIAN_APP_ID", "8aaf0708697b6beb0169c1f12e082e30"),
        ]))
        .unwrap();
        assert_eq!(gateway.name(), "ronglian");
        // The token must not leak through Debug (the worker may log its config).
        assert!(!format!("{gateway:?}").contains("secret-token"));
    }

    #[test]
    fn unknown_gateway_is_one_clear_line() {
        let err = Gateway::from_lookup(lookup_in(&[("SMS_GATEWAY", "twilio")])).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            "SMS_GATEWAY=\"twilio\" is not a known gateway: \
             set SMS_GATEWAY to \"console\" (the default) or \"ronglian\""
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn ronglian_without_credentials_names_the_missing_variable() {
        let err = Gateway::from_lookup(lookup_in(&[("SMS_GATEWAY", "ronglian")])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("RONGLIAN_ACCOUNT_SID is not set: "),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn transient_failures_are_retried() {
        let errors = [
            GatewayError::Timeout,
            GatewayError::Transport("connection refused".into()),
            GatewayError::Http { status: 500 },
            GatewayError::Http { status: 503 },
            GatewayError::Http { status: 429 },
            GatewayError::Http { status: 408 },
            GatewayError::Rejected {
                status_code: "160038".into(),
                status_msg: "短信验证码发送过频繁".into(),
            },
            GatewayError::Rejected {
                status_code: "160050".into(),
                status_msg: "短信发送失败".into(),
            },
            // Unknown codes are given the benefit of the doubt.
            GatewayError::Rejected {
                status_code: "999999".into(),
                status_msg: "".into(),
            },
            GatewayError::BadResponse("not json".into()),
        ];
        for err in errors {
            assert!(err.is_retryable(), "{err}");
        }
    }

    #[test]
    fn refusals_of_the_request_itself_are_not_retried() {
        for status_code in ["112311", "160032", "160042", "160043", "160040"] {
            let err = GatewayError::Rejected {
                status_code: status_code.into(),
                status_msg: String::new(),
            };
            assert!(!err.is_retryable(), "{err}");
            assert!(refusal_reason(status_code).is_some());
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!GatewayError::Http { status }.is_retryable(), "{status}");
        }
    }
}

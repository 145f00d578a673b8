//! The Ronglian (容联云通讯, a.k.a. Yuntongxun / Cloopen) template-SMS gateway: the HTTP call
//! behind the blog's one-line task body.
//!
//! The blog's `tasks.py` does:
//!
//! ```python
//! from celery_tasks.sms.yuntongxun.sms import CCP
//!
//! @celery_app.task(name='SMS')
//! def send_sms_code(mobile, sms_code):
//!     CCP().send_template_sms(mobile, [sms_code, 5], 1)
//! ```
//!
//! `CCP` is a thin singleton around Ronglian's `CCPRestSDK.py` (REST API version
//! `2013-12-26`). Underneath, one call is one signed HTTPS request:
//!
//! ```text
//! POST {base_url}/2013-12-26/Accounts/{accountSid}/SMS/TemplateSMS?sig={SigParameter}
//! Accept: application/json
//! Content-Type: application/json;charset=utf-8
//! Authorization: base64(accountSid + ":" + timestamp)
//!
//! {"to": "13800000000", "appId": "...", "templateId": "1", "datas": ["123456", "5"]}
//! ```
//!
//! - `timestamp` is the current time in China, `yyyyMMddHHmmss` (the SDK uses the local clock
//!   of a server in China; we use UTC+8 explicitly so a worker in any timezone signs the same).
//! - `SigParameter` is the uppercase hex MD5 of `accountSid + authToken + timestamp`. The auth
//!   token itself never travels: the service recomputes the MD5 with its copy of the token
//!   and the timestamp it decodes from `Authorization`.
//!
//! The answer is JSON: `{"statusCode": "000000", "templateSMS": {"smsMessageSid": ...}}` on
//! success, any other `statusCode` (with a `statusMsg`) on refusal. The SDK hands that back
//! as a dict and the blog's task ignores it; here each outcome is a [`GatewayError`] variant,
//! so the task can retry.
//!
//! The signing is in small pure functions (`signature`, `authorization`, `timestamp`)
//! tested against values computed with Python's `hashlib`; the request is tested against a
//! fake Ronglian on `127.0.0.1` that checks the signature the way the real one does.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Utc};
use md5::{Digest as _, Md5};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::{GatewayConfigError, GatewayError, SmsReceipt};

/// Ronglian's production endpoint (the SDK's `app.cloopen.com`, port `8883`). The sandbox is
/// `https://sandboxapp.cloopen.com:8883`.
pub const DEFAULT_BASE_URL: &str = "https://app.cloopen.com:8883";

/// How long one request may take, connection included, before it is a [`GatewayError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The REST API version in the path; the SDK's `softVersion`, unchanged since 2013.
const API_VERSION: &str = "2013-12-26";

/// The `statusCode` of an accepted message.
const STATUS_OK: &str = "000000";

/// China Standard Time. The signature's timestamp is checked against the service's clock in
/// China, so a worker running in UTC (a typical container) must not use its own local time.
const CHINA_STANDARD_TIME: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    // Evaluated at compile time: 8 hours is always a valid offset.
    None => panic!("UTC+8 is a valid offset"), // ok-panic: const-evaluated at compile time
};

// The environment variables read by `RonglianConfig::from_lookup`.
const ACCOUNT_SID: &str = "RONGLIAN_ACCOUNT_SID";
const AUTH_TOKEN: &str = "RONGLIAN_AUTH_TOKEN";
const APP_ID: &str = "RONGLIAN_APP_ID";
const BASE_URL: &str = "RONGLIAN_BASE_URL";
const TIMEOUT_SECS: &str = "RONGLIAN_TIMEOUT_SECS";

/// Everything needed to call Ronglian: the three values from the console's "应用" page, where
/// to send, and how long to wait.
///
/// `Debug` shows the auth token as `<redacted>`, so the config can be logged.
#[derive(Clone)]
pub struct RonglianConfig {
    /// The main account id, `ACCOUNT SID` in the console (the SDK's `accountSid`).
    pub account_sid: String,
    /// The main account token, `AUTH TOKEN` in the console. Only ever used inside the MD5.
    pub auth_token: String,
    /// The application id whose templates are used (the SDK's `appId`).
    pub app_id: String,
    /// Scheme, host and port, e.g. [`DEFAULT_BASE_URL`]; tests point it at a local server.
    pub base_url: String,
    /// Bound on one whole request; beyond it the send fails with [`GatewayError::Timeout`].
    pub timeout: Duration,
}

impl fmt::Debug for RonglianConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RonglianConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("app_id", &self.app_id)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RonglianConfig {
    /// Reads `RONGLIAN_ACCOUNT_SID`, `RONGLIAN_AUTH_TOKEN`, `RONGLIAN_APP_ID` (required),
    /// `RONGLIAN_BASE_URL` (default [`DEFAULT_BASE_URL`]) and `RONGLIAN_TIMEOUT_SECS`
    /// (default 10) through `lookup`, which is `std::env::var` outside tests.
    ///
    /// Only presence and parsing are checked here; [`RonglianGateway::new`] validates the
    /// values, so a config built in code gets the same checks.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayConfigError> {
        // An empty variable (`RONGLIAN_AUTH_TOKEN=` in a .env file) is as good as unset.
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |var: &'static str| get(var).ok_or_else(|| missing(var));

        // Required values first: a missing credential is the likelier mistake.
        let account_sid = required(ACCOUNT_SID)?;
        let auth_token = required(AUTH_TOKEN)?;
        let app_id = required(APP_ID)?;
        let timeout = match get(TIMEOUT_SECS) {
            None => DEFAULT_TIMEOUT,
            Some(value) => match value.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    return Err(GatewayConfigError::Invalid {
                        var: TIMEOUT_SECS,
                        value,
                        hint: TIMEOUT_HINT,
                    });
                }
            },
        };
        Ok(RonglianConfig {
            account_sid,
            auth_token,
            app_id,
            base_url: get(BASE_URL).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            timeout,
        })
    }

    /// Checks the values and returns the config with `base_url` normalised (no trailing `/`).
    fn validated(mut self) -> Result<Self, GatewayConfigError> {
        for (var, value) in [
            (ACCOUNT_SID, &self.account_sid),
            (AUTH_TOKEN, &self.auth_token),
            (APP_ID, &self.app_id),
        ] {
            if value.trim().is_empty() {
                return Err(missing(var));
            }
        }
        // The SID goes into the URL path unescaped, as in the SDK; real SIDs are 32 hex
        // digits, so anything else is a copy-paste accident worth catching before sending.
        if !self.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(GatewayConfigError::Invalid {
                var: ACCOUNT_SID,
                value: self.account_sid,
                hint: "set it to the ACCOUNT SID shown in the Ronglian console (32 letters and digits)",
            });
        }
        let base_ok = reqwest::Url::parse(&self.base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
        if !base_ok {
            return Err(GatewayConfigError::Invalid {
                var: BASE_URL,
                value: self.base_url,
                hint: "set it to the gateway's scheme, host and port, e.g. https://app.cloopen.com:8883",
            });
        }
        if self.timeout.is_zero() {
            return Err(GatewayConfigError::Invalid {
                var: TIMEOUT_SECS,
                value: "0".to_owned(),
                hint: TIMEOUT_HINT,
            });
        }
        self.base_url = self.base_url.trim_end_matches('/').to_owned();
        Ok(self)
    }
}

const TIMEOUT_HINT: &str = "set it to a whole number of seconds greater than 0, e.g. 10";

fn missing(var: &'static str) -> GatewayConfigError {
    let hint = match var {
        ACCOUNT_SID => {
            "set it to the ACCOUNT SID shown in the Ronglian console (SMS_GATEWAY=ronglian needs it)"
        }
        AUTH_TOKEN => {
            "set it to the AUTH TOKEN shown in the Ronglian console (SMS_GATEWAY=ronglian needs it)"
        }
        _ => "set it to the APP ID of your Ronglian application (SMS_GATEWAY=ronglian needs it)",
    };
    GatewayConfigError::Missing { var, hint }
}

/// Sends template SMS through Ronglian's REST API. Cheap to clone: the HTTP client (and its
/// connection pool) is shared between clones.
#[derive(Debug, Clone)]
pub struct RonglianGateway {
    config: RonglianConfig,
    client: reqwest::Client,
}

impl RonglianGateway {
    /// Validates `config` and builds the HTTP client.
    ///
    /// Errors name the offending field by its environment variable (`RONGLIAN_...`), since
    /// that is where the values come from outside tests.
    pub fn new(config: RonglianConfig) -> Result<Self, GatewayConfigError> {
        let config = config.validated()?;
        // reqwest is built with `rustls-no-provider` (ring instead of aws-lc, like lapin), so
        // a crypto provider must be installed before the first client is built, or reqwest
        // panics. `Err` only means one is already installed (by an earlier gateway or the
        // application), which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // One bound for the whole exchange (connect, send, wait, read): the task's retry
            // policy only needs "it did not answer in time", not which phase stalled.
            .timeout(config.timeout)
            .build()
            .map_err(|err| GatewayConfigError::HttpClient {
                gateway: "ronglian",
                reason: error_chain(&err),
            })?;
        Ok(RonglianGateway { config, client })
    }

    /// The validated configuration (its `Debug` redacts the token).
    pub fn config(&self) -> &RonglianConfig {
        &self.config
    }

    /// The SDK's `sendTemplateSMS(to, datas, tempId)`: one signed POST, see the module docs.
    pub async fn send_template_sms(
        &self,
        to: &str,
        datas: &[String],
        template_id: &str,
    ) -> Result<SmsReceipt, GatewayError> {
        let RonglianConfig {
            account_sid,
            auth_token,
            app_id,
            base_url,
            ..
        } = &self.config;
        // The same timestamp must go into `sig` and `Authorization`: the service decodes it
        // from the latter to recompute the former.
        let timestamp = timestamp(Utc::now());
        let sig = signature(account_sid, auth_token, &timestamp);
        let url =
            format!("{base_url}/{API_VERSION}/Accounts/{account_sid}/SMS/TemplateSMS?sig={sig}");
        let body = TemplateSmsRequest {
            to,
            app_id,
            template_id,
            datas,
        };
        tracing::debug!(to, template_id, %account_sid, "sending template SMS through Ronglian");

        let response = self
            .client
            .post(url)
            .header(ACCEPT, "application/json")
            // Set before `.json()`, which only adds its plain `application/json` when no
            // Content-Type is present; the SDK sends this exact value.
            .header(CONTENT_TYPE, "application/json;charset=utf-8")
            .header(AUTHORIZATION, authorization(account_sid, &timestamp))
            .json(&body)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let text = response.text().await.map_err(request_error)?;
        if !status.is_success() {
            // The status is what the retry policy needs; the body only helps a human.
            tracing::warn!(status = status.as_u16(), body = %snippet(&text), "Ronglian answered with an HTTP error");
            return Err(GatewayError::Http {
                status: status.as_u16(),
            });
        }
        let receipt = parse_response(&text)?;
        tracing::debug!(to, message_id = ?receipt.message_id, "Ronglian accepted the SMS");
        Ok(receipt)
    }
}

/// The JSON body, fields named as the SDK names them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateSmsRequest<'a> {
    to: &'a str,
    app_id: &'a str,
    template_id: &'a str,
    datas: &'a [String],
}

/// The parts of the answer we use. `statusMsg` is absent on success, `templateSMS` on failure.
#[derive(Debug, Deserialize)]
struct TemplateSmsResponse {
    #[serde(rename = "statusCode")]
    status_code: String,
    #[serde(rename = "statusMsg", default)]
    status_msg: Option<String>,
    #[serde(rename = "templateSMS", default)]
    template_sms: Option<TemplateSms>,
}

#[derive(Debug, Deserialize)]
struct TemplateSms {
    #[serde(rename = "smsMessageSid", default)]
    sms_message_sid: Option<String>,
}

/// Turns a 2xx body into a receipt or a [`GatewayError::Rejected`].
fn parse_response(body: &str) -> Result<SmsReceipt, GatewayError> {
    let response: TemplateSmsResponse = serde_json::from_str(body)
        .map_err(|err| GatewayError::BadResponse(format!("{err} in {}", snippet(body))))?;
    if response.status_code != STATUS_OK {
        return Err(GatewayError::Rejected {
            status_code: response.status_code,
            status_msg: response.status_msg.unwrap_or_default(),
        });
    }
    Ok(SmsReceipt {
        message_id: response.template_sms.and_then(|sms| sms.sms_message_sid),
    })
}

/// `yyyyMMddHHmmss` in China Standard Time: the SDK's `Batch`.
fn timestamp(now: DateTime<Utc>) -> String {
    now.with_timezone(&CHINA_STANDARD_TIME)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// The `sig` query parameter: uppercase hex MD5 of `accountSid + authToken + timestamp`.
fn signature(account_sid: &str, auth_token: &str, timestamp: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(account_sid.as_bytes());
    md5.update(auth_token.as_bytes());
    md5.update(timestamp.as_bytes());
    format!("{:X}", md5.finalize())
}

/// The `Authorization` header: base64 of `accountSid:timestamp`. Not a secret; it tells the
/// service which account signed and which timestamp went into the signature.
fn authorization(account_sid: &str, timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{timestamp}"))
}

/// Classifies a reqwest failure. Timeouts are checked first: reqwest reports a connect that
/// timed out as both a connect error and a timeout, and "slow" is the more useful answer.
fn request_error(err: reqwest::Error) -> GatewayError {
    if err.is_timeout() {
        GatewayError::Timeout
    } else {
        // `without_url`: the URL carries the one-time signature, which has no place in logs.
        GatewayError::Transport(error_chain(&err.without_url()))
    }
}

/// `err: source: source...` on one line: reqwest's own message ("error sending request") is
/// vague, the cause ("Connection refused") is in the sources.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of a response body, for messages: an HTML error page can be long.
fn snippet(body: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut chars = body.chars();
    let mut short: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use chrono::{NaiveDateTime, TimeDelta};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    // ---- the pure signing functions, against values from Python's hashlib/base64 ----

    #[test]
    fn signature_is_uppercase_md5_of_sid_token_timestamp() {
        // python3 -c 'import hashlib;print(hashlib.md5(b"ACCOUNTSID"+b"AUTHTOKEN"+b"20190624204714").hexdigest().upper())'
        assert_eq!(
            signature("ACCOUNTSID", "AUTHTOKEN", "20190624204714"),
            "9BD239F6F18DE09F084AA71F94C12B99"
        );
    }

    #[test]
    fn authorization_is_base64_of_sid_colon_timestamp() {
        // python3 -c 'import base64;print(base64.b64encode(b"ACCOUNTSID:20190624204714").decode())'
        assert_eq!(
            authorization("ACCOUNTSID", "20190624204714"),
            "QUNDT1VOVFNJRDoyMDE5MDYyNDIwNDcxNA=="
        );
    }

    #[test]
    fn timestamp_is_china_local_time() {
        // 12:47:14 UTC is 20:47:14 in Beijing (the blog's worker start time), and late UTC
        // evenings are already tomorrow there.
        let utc = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
        };
        assert_eq!(timestamp(utc("2019-06-24 12:47:14")), "20190624204714");
        assert_eq!(timestamp(utc("2019-12-31 20:00:00")), "20200101040000");
    }

    // ---- parsing the answer ----

    #[test]
    fn success_answer_gives_the_message_id() {
        let receipt = parse_response(
            r#"{"statusCode":"000000","templateSMS":{"dateCreated":"20190624204715","smsMessageSid":"abc123"}}"#,
        )
        .unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("abc123"));
        // No templateSMS block is still a success, just without an id.
        let receipt = parse_response(r#"{"statusCode":"000000"}"#).unwrap();
        assert_eq!(receipt.message_id, None);
    }

    #[test]
    fn other_status_codes_are_rejections() {
        let err = parse_response(r#"{"statusCode":"160040","statusMsg":"too many"}"#).unwrap_err();
        assert!(
            matches!(&err, GatewayError::Rejected { status_code, status_msg }
                if status_code == "160040" && status_msg == "too many"),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_a_bad_response() {
        let err = parse_response("<html>502 Bad Gateway</html>").unwrap_err();
        assert!(matches!(err, GatewayError::BadResponse(_)), "{err:?}");
        let err = parse_response(r#"{"templateSMS":{}}"#).unwrap_err();
        assert!(matches!(err, GatewayError::BadResponse(_)), "{err:?}");
    }

    #[test]
    fn snippet_cuts_long_bodies_on_char_boundaries() {
        assert_eq!(snippet("short"), "short");
        let long = "验".repeat(300);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }

    // ---- configuration ----

    fn lookup_in(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("RONGLIAN_ACCOUNT_SID", "8aaf0708697b6beb0169c1f12db32e2a"),
        ("RONGLIAN_AUTH_TOKEN", "not-a-real-token"),
        ("RONGLIAN_APP_ID", "8aaf0708697b6beb0169c1f12e082e30"),
    ];

    fn config_error(extra: &[(&str, &str)], without: &str) -> String {
        let vars: Vec<(&str, &str)> = REQUIRED
            .iter()
            .chain(extra)
            .copied()
            .filter(|(name, _)| *name != without)
            .collect();
        let err = RonglianConfig::from_lookup(lookup_in(&vars))
            .and_then(RonglianGateway::new)
            .unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        assert!(
            !message.contains("not-a-real-token"),
            "token leaked: {message}"
        );
        message
    }

    #[test]
    fn config_defaults_match_the_sdk() {
        let gateway =
            RonglianGateway::new(RonglianConfig::from_lookup(lookup_in(&REQUIRED)).unwrap())
                .unwrap();
        let config = gateway.config();
        assert_eq!(config.account_sid, "8aaf0708697b6beb0169c1f12db32e2a");
        assert_eq!(config.base_url, "https://app.cloopen.com:8883");
        assert_eq!(config.timeout, Duration::from_secs(10));
    }

    #[test]
    fn config_overrides_are_read_and_normalised() {
        let mut vars = REQUIRED.to_vec();
        vars.push(("RONGLIAN_BASE_URL", "https://sandboxapp.cloopen.com:8883/"));
        vars.push(("RONGLIAN_TIMEOUT_SECS", " 3 "));
        let gateway =
            RonglianGateway::new(RonglianConfig::from_lookup(lookup_in(&vars)).unwrap()).unwrap();
        assert_eq!(
            gateway.config().base_url,
            "https://sandboxapp.cloopen.com:8883"
        );
        assert_eq!(gateway.config().timeout, Duration::from_secs(3));
    }

    #[test]
    fn config_errors_are_one_clear_line() {
        assert_eq!(
            config_error(&[], "RONGLIAN_AUTH_TOKEN"),
            "RONGLIAN_AUTH_TOKEN is not set: set it to the AUTH TOKEN shown in the Ronglian \
             console (SMS_GATEWAY=ronglian needs it)"
        );
        // Empty counts as unset.
        assert!(
            config_error(&[("RONGLIAN_APP_ID", " ")], "")
                .starts_with("RONGLIAN_APP_ID is not set: ")
        );
        assert_eq!(
            config_error(&[("RONGLIAN_TIMEOUT_SECS", "ten")], ""),
            "RONGLIAN_TIMEOUT_SECS=\"ten\" is invalid: set it to a whole number of seconds \
             greater than 0, e.g. 10"
        );
        assert!(
            config_error(&[("RONGLIAN_TIMEOUT_SECS", "0")], "")
                .starts_with("RONGLIAN_TIMEOUT_SECS=\"0\" is invalid: ")
        );
        assert!(
            config_error(&[("RONGLIAN_BASE_URL", "app.cloopen.com:8883")], "")
                .starts_with("RONGLIAN_BASE_URL=\"app.cloopen.com:8883\" is invalid: ")
        );
    }

    #[test]
    fn a_bad_account_sid_is_caught_before_sending() {
        let message = RonglianGateway::new(RonglianConfig {
            account_sid: "8aaf/../x".into(),
            auth_token: "not-a-real-token".into(),
            app_id: "app".into(),
            base_url: DEFAULT_BASE_URL.into(),
            timeout: DEFAULT_TIMEOUT,
        })
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("RONGLIAN_ACCOUNT_SID=\"8aaf/../x\" is invalid: "),
            "{message}"
        );
    }

    #[test]
    fn debug_redacts_the_token() {
        let config = RonglianConfig::from_lookup(lookup_in(&REQUIRED)).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("not-a-real-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    // ---- a fake Ronglian on 127.0.0.1 ----

    /// What the fake service knows about the one account it serves.
    const SID: &str = "8aaf0708697b6beb0169c1f12db32e2a";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const APP: &str = "8aaf0708697b6beb0169c1f12e082e30";

    /// The fake's own code for a request that fails its checks (made up for these tests; the
    /// real service has its own codes for authentication failures).
    const CHECK_FAILED: &str = "999999";

    /// Bound on every wait in these tests.
    const WAIT: Duration = Duration::from_secs(5);

    /// What the fake does with a request that passed every check.
    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        Accept,
        /// A business error, e.g. the brief's example code 112300.
        Refuse,
        Http500,
        /// Read the request, then never answer.
        Hang,
    }

    /// One HTTP request as the fake read it.
    #[derive(Debug)]
    struct Request {
        method: String,
        target: String,
        /// Header names lowercased.
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    /// Starts the fake on a free port; the handle yields the request it saw and the problems
    /// its checks found (empty when the request was valid).
    async fn start_fake(behaviour: Behaviour) -> (String, JoinHandle<(Request, Vec<String>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            let problems = check(&request);
            if !problems.is_empty() {
                // Like the real service: a 200 with a refusal in the JSON.
                let body = json!({"statusCode": CHECK_FAILED, "statusMsg": problems.join("; ")});
                respond(&mut stream, 200, &body.to_string()).await;
                return (request, problems);
            }
            match behaviour {
                Behaviour::Accept => {
                    let body = json!({
                        "statusCode": "000000",
                        "templateSMS": {"dateCreated": "20190624204715", "smsMessageSid": "ff80808155f5b1e5015f0ae6a0a40001"},
                    });
                    respond(&mut stream, 200, &body.to_string()).await;
                }
                Behaviour::Refuse => {
                    let body =
                        json!({"statusCode": "112300", "statusMsg": "接收短信的手机号码格式错误"});
                    respond(&mut stream, 200, &body.to_string()).await;
                }
                Behaviour::Http500 => {
                    respond(&mut stream, 500, "<html>Internal Server Error</html>").await;
                }
                Behaviour::Hang => {
                    // Keep the connection open and silent; the test aborts this task.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
            (request, problems)
        });
        (format!("http://{addr}"), handle)
    }

    /// Reads one HTTP/1.1 request: head up to the blank line, then `Content-Length` bytes.
    async fn read_request(stream: &mut TcpStream) -> Request {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            assert!(buf.len() < 64 * 1024, "request head too large");
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let method = request_line.next().unwrap().to_owned();
        let target = request_line.next().unwrap().to_owned();
        let headers: HashMap<String, String> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        Request {
            method,
            target,
            headers,
            body,
        }
    }

    async fn respond(stream: &mut TcpStream, status: u16, body: &str) {
        let reason = if status == 200 { "OK" } else { "Error" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
    }

    /// What the real service verifies, written independently of the code under test.
    fn check(request: &Request) -> Vec<String> {
        let mut problems = Vec::new();
        if request.method != "POST" {
            problems.push(format!("method {} is not POST", request.method));
        }
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        let expected_path = format!("/2013-12-26/Accounts/{SID}/SMS/TemplateSMS");
        if path != expected_path {
            problems.push(format!("path {path} is not {expected_path}"));
        }
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        if header("accept") != Some("application/json") {
            problems.push(format!("Accept is {:?}", header("accept")));
        }
        if header("content-type") != Some("application/json;charset=utf-8") {
            problems.push(format!("Content-Type is {:?}", header("content-type")));
        }

        // Recover account and timestamp from Authorization, then recompute the signature
        // with the token only the service (and the account owner) knows.
        let decoded = header("authorization")
            .and_then(|auth| base64::engine::general_purpose::STANDARD.decode(auth).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded.as_deref().and_then(|auth| auth.split_once(':')) {
            None => problems.push(format!(
                "Authorization {:?} is not base64(sid:timestamp)",
                header("authorization")
            )),
            Some((sid, ts)) => {
                if sid != SID {
                    problems.push(format!("Authorization names account {sid}"));
                }
                match NaiveDateTime::parse_from_str(ts, "%Y%m%d%H%M%S") {
                    Err(_) => problems.push(format!("timestamp {ts} is not yyyyMMddHHmmss")),
                    Ok(signed_at) => {
                        // The service's clock runs on China time.
                        let now_in_china = Utc::now().naive_utc() + TimeDelta::hours(8);
                        if (now_in_china - signed_at).abs() > TimeDelta::minutes(5) {
                            problems.push(format!("timestamp {ts} is not China time now"));
                        }
                    }
                }
                let expected_sig = format!("{:X}", Md5::digest(format!("{SID}{TOKEN}{ts}")));
                let sig = query.split('&').find_map(|pair| pair.strip_prefix("sig="));
                if sig != Some(expected_sig.as_str()) {
                    problems.push(format!("sig {sig:?} does not match"));
                }
            }
        }

        match serde_json::from_slice::<Value>(&request.body) {
            Err(err) => problems.push(format!("body is not JSON: {err}")),
            Ok(body) => {
                if body["appId"] != APP {
                    problems.push(format!("appId is {}", body["appId"]));
                }
                if !body["to"].is_string() || !body["templateId"].is_string() {
                    problems.push(format!("to/templateId are not strings in {body}"));
                }
                let datas_ok = body["datas"]
                    .as_array()
                    .is_some_and(|datas| datas.iter().all(Value::is_string));
                if !datas_ok {
                    problems.push(format!("datas is not a list of strings in {body}"));
                }
            }
        }
        problems
    }

    fn gateway(base_url: String, auth_token: &str, timeout: Duration) -> RonglianGateway {
        RonglianGateway::new(RonglianConfig {
            account_sid: SID.into(),
            auth_token: auth_token.into(),
            app_id: APP.into(),
            base_url,
            timeout,
        })
        .unwrap()
    }

    /// The blog's call: `send_template_sms(mobile, [sms_code, 5], 1)`.
    async fn send_blog_sms(gateway: &RonglianGateway) -> Result<SmsReceipt, GatewayError> {
        let datas = ["123456".to_owned(), "5".to_owned()];
        timeout(WAIT, gateway.send_template_sms("13800000000", &datas, "1"))
            .await
            .expect("the send itself must be bounded by the gateway timeout")
    }

    async fn seen(handle: JoinHandle<(Request, Vec<String>)>) -> (Request, Vec<String>) {
        timeout(WAIT, handle).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn sends_a_signed_request_and_returns_the_message_id() {
        let (base_url, server) = start_fake(Behaviour::Accept).await;
        let result = send_blog_sms(&gateway(base_url, TOKEN, WAIT)).await;
        let (request, problems) = seen(server).await;
        assert!(problems.is_empty(), "the fake refused: {problems:?}");
        assert_eq!(
            result.unwrap().message_id.as_deref(),
            Some("ff80808155f5b1e5015f0ae6a0a40001")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"to": "13800000000", "appId": APP, "templateId": "1", "datas": ["123456", "5"]})
        );
    }

    #[tokio::test]
    async fn a_refusal_of_the_request_is_rejected_and_not_retried() {
        let (base_url, server) = start_fake(Behaviour::Refuse).await;
        let err = send_blog_sms(&gateway(base_url, TOKEN, WAIT))
            .await
            .unwrap_err();
        let (_, problems) = seen(server).await;
        assert!(problems.is_empty(), "the fake refused: {problems:?}");
        assert!(
            matches!(&err, GatewayError::Rejected { status_code, .. } if status_code == "112300"),
            "{err:?}"
        );
        // 112300: "the receiving number is empty" would be refused every time.
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn http_500_is_an_http_error() {
        let (base_url, server) = start_fake(Behaviour::Http500).await;
        let err = send_blog_sms(&gateway(base_url, TOKEN, WAIT))
            .await
            .unwrap_err();
        seen(server).await;
        assert!(matches!(err, GatewayError::Http { status: 500 }), "{err:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (base_url, server) = start_fake(Behaviour::Hang).await;
        let started = tokio::time::Instant::now();
        let err = send_blog_sms(&gateway(base_url, TOKEN, Duration::from_secs(1)))
            .await
            .unwrap_err();
        server.abort();
        assert!(matches!(err, GatewayError::Timeout), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn wrong_token_fails_the_servers_signature_check() {
        // Proves the fake's check can fail: everything is right except the token, which
        // only shows up inside the MD5.
        let (base_url, server) = start_fake(Behaviour::Accept).await;
        let err = send_blog_sms(&gateway(base_url, "a-different-token", WAIT))
            .await
            .unwrap_err();
        let (_, problems) = seen(server).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("sig "), "{problems:?}");
        assert!(
            matches!(&err, GatewayError::Rejected { status_code, status_msg }
                if status_code == CHECK_FAILED && status_msg.contains("does not match")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("a-different-token"));
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error() {
        // Bind then drop to get a port nobody listens on.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = send_blog_sms(&gateway(format!("http://{addr}"), TOKEN, WAIT))
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::Transport(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            !message.contains("sig="),
            "the signed URL leaked: {message}"
        );
        assert!(!message.contains(TOKEN));
    }
}

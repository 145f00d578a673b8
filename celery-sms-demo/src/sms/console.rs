//! The console gateway: logs the SMS the worker would send, and sends nothing.
//!
//! It is the default (`SMS_GATEWAY` unset or `console`) so that the whole tutorial, producer
//! to broker to worker, runs without a Ronglian account, without network access and without
//! paying for messages. You still see the text a user would get: template 1 is rendered the
//! way the blog uses it, `[sms_code, 5]` → `您的验证码为123456，5分钟内有效`.

use super::{GatewayError, SmsReceipt};

/// Logs each message with `tracing::info!` instead of sending it. Build it with
/// `ConsoleGateway::default()`.
// Braced rather than a unit struct: `default()` stays the one way to build it (clippy
// flags `Unit::default()`), and settings can be added later without breaking callers.
#[derive(Debug, Clone, Default)]
pub struct ConsoleGateway {}

impl ConsoleGateway {
    /// Logs the text that would be sent and returns a receipt without a message id.
    ///
    /// It never fails: there is nothing to fail. It is `async` only so that both gateways
    /// look alike behind [`super::Gateway`].
    pub async fn send_template_sms(
        &self,
        to: &str,
        datas: &[String],
        template_id: &str,
    ) -> Result<SmsReceipt, GatewayError> {
        let text = render(datas, template_id);
        tracing::info!(
            to,
            template_id,
            "SMS to {to}: {text} (template {template_id}, console gateway: nothing was sent)"
        );
        Ok(SmsReceipt { message_id: None })
    }
}

/// The text a user would read. Templates live on the Ronglian side, so we only know the
/// shape of the blog's template 1 (code, minutes); any other template shows its raw data.
fn render(datas: &[String], template_id: &str) -> String {
    match (template_id, datas) {
        ("1", [code, minutes]) => format!("您的验证码为{code}，{minutes}分钟内有效"),
        _ => format!("template data {datas:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn renders_the_blogs_verification_code_template() {
        assert_eq!(
            render(&strings(&["123456", "5"]), "1"),
            "您的验证码为123456，5分钟内有效"
        );
    }

    #[test]
    fn renders_other_templates_as_raw_data() {
        assert_eq!(
            render(&strings(&["a", "b", "c"]), "42"),
            r#"template data ["a", "b", "c"]"#
        );
    }

    #[tokio::test]
    async fn sending_succeeds_without_a_message_id() {
        let receipt = ConsoleGateway::default()
            .send_template_sms("13800000000", &strings(&["123456", "5"]), "1")
            .await
            .unwrap();
        assert_eq!(receipt, SmsReceipt { message_id: None });
    }
}

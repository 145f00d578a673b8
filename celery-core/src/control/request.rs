//! A remote-control request, as kombu's `Mailbox._publish` writes it, and
//! the rule that says which workers run it (`Node.handle_message`).
//!
//! ```json
//! {"method": "ping", "arguments": {}, "destination": null, "pattern": null,
//!  "matcher": null, "ticket": "<uuid>",
//!  "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "<oid>"}}
//! ```
//!
//! Every worker sees every request (the mailbox is a fanout); `destination`
//! (a list of node names) or `pattern` + `matcher` (`glob`, the default, or
//! `pcre`) narrow it down. Without `ticket` and `reply_to` it is a *cast*:
//! the sender waits for no reply.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where the reply goes: the sender's reply queue, through the reply exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub exchange: String,
    pub routing_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    #[serde(default)]
    pub destination: Option<Vec<String>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub matcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

/// The exchange kombu's clients name in `reply_to`.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";
/// The fanout every worker's mailbox is bound to.
pub const MAILBOX_EXCHANGE: &str = "celery.pidbox";

impl Request {
    /// A request to every worker (narrow it with [`to`](Self::to)).
    pub fn new(method: &str, arguments: Map<String, Value>) -> Request {
        Request {
            method: method.to_owned(),
            arguments,
            destination: None,
            pattern: None,
            matcher: None,
            ticket: None,
            reply_to: None,
        }
    }

    /// Only these nodes run it.
    pub fn to(mut self, destination: Vec<String>) -> Request {
        self.destination = (!destination.is_empty()).then_some(destination);
        self
    }

    /// Asks for replies, sent to the reply queue `oid`, stamped `ticket`.
    pub fn with_reply(mut self, ticket: String, oid: String) -> Request {
        self.ticket = Some(ticket);
        self.reply_to = Some(ReplyTo {
            exchange: REPLY_EXCHANGE.to_owned(),
            routing_key: oid,
        });
        self
    }

    /// Reads a request body; `None` for anything that is not one (a
    /// mailbox is a fanout anybody can publish to).
    pub fn parse(body: &Value) -> Option<Request> {
        serde_json::from_value(body.clone()).ok()
    }

    /// Whether the node `hostname` runs it (kombu's `Node.handle_message`).
    pub fn is_for(&self, hostname: &str) -> bool {
        if let Some(destination) = self.destination.as_ref().filter(|d| !d.is_empty()) {
            return destination.iter().any(|node| node == hostname);
        }
        match (&self.pattern, &self.matcher) {
            (Some(pattern), Some(matcher)) if !pattern.is_empty() && !matcher.is_empty() => {
                matches(hostname, pattern, matcher)
            }
            _ => true,
        }
    }

    /// The reply's address, if the sender waits for one.
    pub fn reply_address(&self) -> Option<(&ReplyTo, &str)> {
        Some((self.reply_to.as_ref()?, self.ticket.as_deref()?))
    }
}

/// kombu's matchers: `glob` is Python's `fnmatch`, `pcre` is `re.match`
/// (anchored at the start only). A pattern that does not compile, or a
/// matcher kombu does not know, matches nothing.
fn matches(hostname: &str, pattern: &str, matcher: &str) -> bool {
    match matcher {
        "glob" => glob::Pattern::new(pattern).is_ok_and(|glob| glob.matches(hostname)),
        "pcre" => regex::Regex::new(&format!("^(?:{pattern})"))
            .is_ok_and(|regex| regex.is_match(hostname)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(extra: Value) -> Request {
        let mut body = json!({"method": "ping", "arguments": {}});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        Request::parse(&body).unwrap()
    }

    #[test]
    fn kombus_request_is_read_as_sent() {
        let body = json!({"method": "ping", "arguments": {}, "destination": null,
            "pattern": null, "matcher": null, "ticket": "t-1",
            "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid-1"}});
        let request = Request::parse(&body).unwrap();
        assert_eq!(request.method, "ping");
        let (reply_to, ticket) = request.reply_address().unwrap();
        assert_eq!((reply_to.routing_key.as_str(), ticket), ("oid-1", "t-1"));
        assert!(request.is_for("anyone@host"));
        assert!(Request::parse(&json!({"no": "method"})).is_none());
        assert!(Request::parse(&json!([1, 2])).is_none());
    }

    #[test]
    fn destination_then_pattern_pick_the_nodes() {
        let only_b = request(json!({"destination": ["b@h"]}));
        assert!(only_b.is_for("b@h") && !only_b.is_for("a@h"));
        // An empty destination is everyone, as in kombu.
        assert!(request(json!({"destination": []})).is_for("a@h"));

        let glob = request(json!({"pattern": "rust-*@*", "matcher": "glob"}));
        assert!(glob.is_for("rust-1@box") && !glob.is_for("py@box"));
        let pcre = request(json!({"pattern": "rust-[0-9]", "matcher": "pcre"}));
        assert!(pcre.is_for("rust-1@box") && !pcre.is_for("x-rust-1@box"));
        // A pattern that does not compile, or an unknown matcher, runs nowhere.
        assert!(!request(json!({"pattern": "(", "matcher": "pcre"})).is_for("a"));
        assert!(!request(json!({"pattern": "a", "matcher": "soundex"})).is_for("a"));
    }

    #[test]
    fn a_client_request_round_trips() {
        let request = Request::new("stats", Map::new())
            .to(vec!["w@h".into()])
            .with_reply("t".into(), "o".into());
        let read = Request::parse(&serde_json::to_value(&request).unwrap()).unwrap();
        assert_eq!(read, request);
        assert_eq!(read.reply_to.unwrap().exchange, REPLY_EXCHANGE);
    }
}

//! Reading an AMQP URL, once, without touching the network: what is wrong
//! with it is one line that never shows its password.

use lapin::uri::AMQPUri;

use crate::{error::AmqpError, redact::Redacted};

/// Parses and checks an AMQP URL without touching the network.
pub fn parse_amqp_url(url: &str) -> Result<AMQPUri, AmqpError> {
    let invalid = |reason: String| AmqpError::InvalidUrl {
        url: Redacted(url).to_string(),
        reason,
    };
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(invalid("the scheme must be amqp:// or amqps://".into()));
    }
    let uri: AMQPUri = url.parse().map_err(invalid)?;
    if uri.authority.host.is_empty() {
        return Err(invalid("the host is missing".into()));
    }
    // AMQP 0-9-1 frames are at least 4096 bytes (0 means "no limit"); a
    // smaller frame_max only fails later, as a FRAME-ERROR from the broker.
    if uri
        .query
        .frame_max
        .is_some_and(|size| size != 0 && size < 4096)
    {
        return Err(invalid(
            "frame_max must be 0 (no limit) or at least 4096".into(),
        ));
    }
    Ok(uri)
}

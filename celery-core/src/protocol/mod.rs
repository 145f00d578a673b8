//! Celery's wire format (protocol 2, JSON), pure data in and out.
//!
//! Nothing here does I/O: the brokers hand bytes to these functions and get
//! bytes back, so the format is unit-tested against messages captured from a
//! real Celery 5.7 (`tests.rs`, and `../shared/celery-protocol.md`).
//!
//! | module | what it knows |
//! |---|---|
//! | [`message`] | headers, properties, `[args, kwargs, embed]` body; strict decoding |
//! | [`redis_envelope`] | kombu's JSON envelope in a Redis list; priority lists |
//! | [`amqp_table`] | headers as an AMQP field table with py-amqp's type tags |
//! | [`json`] | Python's `json.dumps` output (separators, ASCII escapes) |
//! | [`time`] | ISO-8601 `eta` / `expires` / `date_done` |
//! | [`pyrepr`] | Python `repr()` for `argsrepr` / `kwargsrepr` |

pub mod amqp_table;
pub mod json;
pub mod message;
pub mod pyrepr;
pub mod redis_envelope;
pub mod time;

#[cfg(test)]
mod tests;

pub use message::{DecodeError, Embed, SendOptions, TaskHeaders, TaskMessage, TaskProperties};

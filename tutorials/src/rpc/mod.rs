//! Tutorial 6, RPC: a request on one queue, its reply on another.
//!
//! ```text
//! rpc_client ──(reply_to, correlation_id, "30")──▶ rpc_queue ──▶ rpc_server
//!     ▲                                                              │
//!     └──────────── callback queue ◀──(correlation_id, "832040")─────┘
//! ```
//!
//! The client names its callback queue in `reply_to` and tags each request
//! with a fresh `correlation_id`; the server publishes the answer to
//! `reply_to` with the same id, then acks the request. The Python client
//! makes one call at a time and waits forever. Ours ([`client`]) keeps one
//! callback queue for any number of concurrent calls, matches replies by
//! id (and ignores strays), and gives up on a call after a timeout. It can
//! also use RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`), which
//! skips declaring a callback queue at all.

pub mod client;
pub mod server;

pub use client::{ReplyQueue, RpcClient, RpcError};

/// The queue the server consumes and the client sends requests to.
pub const RPC_QUEUE: &str = "rpc_queue";

/// The largest `n` whose Fibonacci number fits in a `u64`.
pub const MAX_FIB_INPUT: u64 = 93;

/// The tutorial's `fib(n)`, with fib(0) = 0 and fib(1) = 1.
///
/// The tutorial's recursive version takes exponential time (its text says
/// so); this loop gives the same numbers in `n` steps, and `None` past
/// [`MAX_FIB_INPUT`] instead of overflowing.
pub fn fib(n: u64) -> Option<u64> {
    if n > MAX_FIB_INPUT {
        return None;
    }
    let (mut current, mut next) = (0u64, 1u64);
    for _ in 0..n {
        // The last step computes fib(n + 1), which we never return: for
        // n = 93 it is past u64::MAX, so it saturates instead of failing.
        (current, next) = (next, current.saturating_add(next));
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::fib;

    #[test]
    fn fib_matches_the_tutorial_and_stops_before_overflow() {
        let firsts: Vec<u64> = (0..10).filter_map(fib).collect();
        assert_eq!(firsts, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
        assert_eq!(fib(30), Some(832_040));
        assert_eq!(fib(93), Some(12_200_160_415_121_876_738));
        assert_eq!(fib(94), None);
        assert_eq!(fib(u64::MAX), None);
    }
}

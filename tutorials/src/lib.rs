//! RabbitMQ's tutorials 2–7 (<https://www.rabbitmq.com/tutorials>), one
//! binary per script of the Python (pika) version, on lapin 4.
//!
//! The blog stops at one producer and one consumer on one queue. These are
//! the next six patterns a reader meets, each binary named after its Python
//! script and printing the same console lines, so the two-terminal steps of
//! the tutorial work with `cargo run -p tutorials --bin <script> -- <args>`:
//!
//! | tutorial | binaries (`src/bin/`) | the idea | module here |
//! |---|---|---|---|
//! | 2 Work queues | `new_task`, `worker` | competing consumers, fair dispatch | [`work`] |
//! | 3 Publish/Subscribe | `emit_log`, `receive_logs` | fanout exchange | [`exchange`], [`subscribe`] |
//! | 4 Routing | `emit_log_direct`, `receive_logs_direct` | direct exchange | [`exchange`], [`subscribe`] |
//! | 5 Topics | `emit_log_topic`, `receive_logs_topic` | topic exchange | [`exchange`], [`subscribe`] |
//! | 6 RPC | `rpc_server`, `rpc_client` | request/reply | [`rpc`] |
//! | 7 Publisher confirms | `publisher_confirms` | three ways to wait for confirms | [`confirms`] |
//!
//! Each binary reads like its Python script: parse the same arguments,
//! connect, declare, publish or consume. What the scripts leave out lives
//! in this library once — every publish is confirmed, every task is acked
//! after its work, Ctrl-C stops cleanly, and a broker that refuses something
//! says why in one line — and the connection itself comes from `shared`,
//! as it does for the blog's producer and consumer.

pub mod args;
pub mod confirms;
pub mod exchange;
pub mod rpc;
pub mod subscribe;
pub mod work;

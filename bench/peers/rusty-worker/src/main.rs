//! The rusty-celery (crate `celery` 0.5) worker that bench/peers.sh races
//! against ours: one task, `noop`, and the crate's own consume loop.
//!
//! CELERY_BROKER_URL  redis://… or amqp://… (the crate picks the broker by scheme)
//! CELERY_QUEUE       the one queue to consume
//! PREFETCH           tasks taken ahead (default 512; a u16 in this crate)
//! RUST_LOG           env_logger filter, default `info`: the crate then logs
//!                    `Task noop[<id>] succeeded in …` per task, which the
//!                    kill -9 test counts, as it does with our worker's lines.

// `#[celery::task]` (0.5) expands to an impl inside a const, which rustc
// now lints; it is the crate's macro, not ours to change.
#![allow(non_local_definitions)]

use celery::prelude::*;
use std::sync::Arc;

#[celery::task]
fn noop() -> TaskResult<()> {
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let broker = std::env::var("CELERY_BROKER_URL")?;
    let queue = std::env::var("CELERY_QUEUE")?;
    let prefetch = match std::env::var("PREFETCH") {
        Ok(value) => value.parse()?,
        Err(_) => 512,
    };
    // The builder rather than `celery::app!`: the macro only forwards to it,
    // and this spells out every setting the benchmark relies on.
    let app = celery::CeleryBuilder::new("rusty", &broker)
        .default_queue(&queue)
        .prefetch_count(prefetch)
        .build()
        .await?;
    app.register_task::<noop>().await?;
    let app = Arc::new(app);
    app.consume_from(&[queue.as_str()]).await?;
    app.close().await?;
    Ok(())
}

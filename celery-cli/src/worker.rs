//! `worker` (Celery's `celery worker`), `beat` (`celery beat`), and both in
//! one process (`worker -B`): the flags become a [`WorkerConfig`] and a
//! [`BeatConfig`](celery_core::beat::BeatConfig), the app's tasks are built,
//! and the first signal starts a warm shutdown (see [`ShutdownSignals`]).

use anyhow::Context;
use celery_core::{
    beat,
    broker::Transport,
    worker::{self, ShutdownSignals, WorkerConfig},
};
use clap::Args;
use shared::Shutdown;

use crate::{
    BuildTasks, Setup,
    args::{BeatArgs, WorkerArgs},
};

pub(crate) async fn run_worker<F: Args>(
    args: WorkerArgs<F>,
    app_name: &str,
    build_tasks: BuildTasks<F>,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::new().context("installing signal handlers")?;
    Transport::of(&args.broker.broker)?;
    let hostname = args
        .hostname
        .unwrap_or_else(|| format!("celery@{}", shared::settings::hostname()));
    let beat_config = match args.beat {
        true => Some(args.beat_options.config(&args.broker, hostname.clone())?),
        false => None,
    };
    let registry = build_tasks(Setup {
        flags: args.app,
        broker_url: args.broker.broker.clone(),
        result_backend: args.broker.result_backend.clone(),
        redis: args.broker.redis(),
    })
    .await?;
    // -Q defaults to the default queue, as Celery's worker consumes
    // `task_default_queue` when no queue is named.
    let queues = match args.queues.is_empty() {
        true => vec![args.default_queue.clone()],
        false => args.queues,
    };
    let config = WorkerConfig {
        amqp: args.broker.amqp(None),
        broker_url: args.broker.broker,
        result_backend: args.broker.result_backend,
        concurrency: args
            .concurrency
            .map_or(worker::DEFAULT_CONCURRENCY, |n| n as usize),
        blocking_pool: args
            .blocking_threads
            .map_or_else(worker::default_blocking_pool, |n| n as usize),
        queues,
        default_queue: args.default_queue,
        prefetch_multiplier: args.prefetch_multiplier as usize,
        visibility_timeout: args.visibility_timeout,
        hostname,
        app_name: app_name.to_owned(),
        banner: true,
        task_events: args.task_events,
        mingle: !args.without_mingle,
    };
    let signals = ShutdownSignals::on(shutdown);
    // -B: beat runs beside the worker and stops on the same first signal.
    // If beat fails, the worker stops too, so the error is not lost in a log.
    let beat = beat_config.map(|config| {
        let warm = signals.warm.clone();
        tokio::spawn(async move {
            let result = beat::run(config, warm.clone()).await;
            if result.is_err() {
                warm.cancel();
            }
            result
        })
    });
    let worker_result = worker::run(config, registry, signals.clone()).await;
    if let Some(beat) = beat {
        signals.warm.cancel();
        beat.await.context("the beat task panicked")??;
    }
    worker_result?;
    Ok(())
}

pub(crate) async fn run_beat(args: BeatArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    Transport::of(&args.broker.broker)?;
    let config = args.options.config(
        &args.broker,
        format!("beat@{}", shared::settings::hostname()),
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.recv().await;
        trigger.cancel();
    });
    beat::run(config, stop).await?;
    Ok(())
}

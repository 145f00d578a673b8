//! `worker` (Celery's `celery worker`), `beat` (`celery beat`), and both in
//! one process (`worker -B`): the flags become a [`WorkerConfig`] and a
//! [`BeatConfig`](celery_core::beat::BeatConfig), the app's tasks are built,
//! and the first signal starts a warm shutdown (see [`ShutdownSignals`]).

use anyhow::Context;
use celery_core::{
    beat,
    broker::Transport,
    config::Settings,
    worker::{self, ShutdownSignals, WorkerConfig},
};
use clap::Args;
use shared::Shutdown;

use crate::{
    BuildTasks, Setup,
    args::{BeatArgs, WorkerArgs, amqp, redis},
};

pub(crate) async fn run_worker<F: Args>(
    args: WorkerArgs<F>,
    mut settings: Settings,
    app_name: &str,
    build_tasks: BuildTasks<F>,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::new().context("installing signal handlers")?;
    args.apply(&mut settings);
    Transport::of(&settings.broker_url)?;
    let hostname = args
        .hostname
        .unwrap_or_else(|| format!("celery@{}", shared::settings::hostname()));
    let beat_config = match args.beat {
        true => Some(args.beat_options.config(&settings, hostname.clone())?),
        false => None,
    };
    let registry = build_tasks(Setup {
        flags: args.app,
        broker_url: settings.broker_url.clone(),
        result_backend: settings.result_backend.clone(),
        redis: redis(&settings),
    })
    .await?;
    // -Q defaults to the default queue, as Celery's worker consumes
    // `task_default_queue` when no queue is named.
    let queues = match args.queues.is_empty() {
        true => vec![settings.task_default_queue.clone()],
        false => args.queues,
    };
    let config = WorkerConfig {
        amqp: amqp(&settings, None),
        concurrency: settings
            .worker_concurrency
            .map_or(worker::DEFAULT_CONCURRENCY, |n| n as usize),
        blocking_pool: settings
            .worker_blocking_threads
            .map_or_else(worker::default_blocking_pool, |n| n as usize),
        queues,
        prefetch_multiplier: settings.worker_prefetch_multiplier as usize,
        visibility_timeout: settings.broker_transport_options.visibility_timeout,
        hostname,
        app_name: app_name.to_owned(),
        banner: true,
        task_events: settings.worker_send_task_events,
        mingle: !args.without_mingle,
        broker_url: settings.broker_url,
        result_backend: settings.result_backend,
        default_queue: settings.task_default_queue,
    };
    let signals = stages_on(shutdown);
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

pub(crate) async fn run_beat(args: BeatArgs, mut settings: Settings) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    args.broker.apply(&mut settings);
    Transport::of(&settings.broker_url)?;
    let config = args
        .options
        .config(&settings, format!("beat@{}", shared::settings::hostname()))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.recv().await;
        trigger.cancel();
    });
    beat::run(config, stop).await?;
    Ok(())
}

/// Ctrl-C and SIGTERM drive the worker's shutdown, as in Celery: the first
/// signal starts a warm shutdown, the second a cold one.
fn stages_on(mut shutdown: Shutdown) -> ShutdownSignals {
    let signals = ShutdownSignals::default();
    let stages = signals.clone();
    tokio::spawn(async move {
        loop {
            shutdown.recv().await;
            stages.next_stage();
        }
    });
    signals
}

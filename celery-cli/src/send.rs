//! `send`: one task (`task.apply_async(args, kwargs, countdown=…)`, or
//! `celery call`), many for load tests (`--count`, `--rate`), or a canvas
//! (`--canvas`, in `canvas.rs`); with `--wait`, its result.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use celery_core::{
    backend::ResultBackend,
    broker::{AnyProducer, Producer, Transport},
    config::Settings,
    protocol::{SendOptions, TaskMessage, time},
};
use chrono::Utc;
use serde_json::Value;
use shared::{Shutdown, cli::print_line};

use crate::{
    args::{SendArgs, amqp, redis},
    canvas,
    result::print_result,
};

pub(crate) async fn send(args: SendArgs, mut settings: Settings) -> anyhow::Result<()> {
    args.broker.apply(&mut settings);
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| settings.task_default_queue.clone());
    if let Some(expression) = &args.canvas {
        return canvas::send(canvas::CanvasSend {
            expression,
            broker: &settings.broker_url,
            amqp: amqp(&settings, None),
            result_backend: settings.result_backend.as_deref(),
            redis: redis(&settings),
            queue: &queue,
            wait: args.wait.then_some(args.timeout),
        })
        .await;
    }
    if args.wait && settings.result_backend.is_none() {
        bail!(
            "--wait needs a result backend: pass --result-backend redis://127.0.0.1:6379/8 (or set CELERY_RESULT_BACKEND)"
        );
    }
    Transport::of(&settings.broker_url)?;
    // `--countdown` is at most ten years (its parser checks), so this fits.
    let countdown = args
        .countdown
        .and_then(|countdown| time::after(Utc::now(), countdown));
    let options = SendOptions {
        eta: args.eta.or(countdown),
        expires: args.expires,
        ..SendOptions::default()
    };
    let task_args: Vec<Value> = match &args.json_args {
        Some(list) => list.clone(),
        None => args.args.iter().cloned().map(Value::String).collect(),
    };
    let task_kwargs = args.kwargs.clone().unwrap_or_default();
    let mut producer = AnyProducer::connect(&settings.broker_url, amqp(&settings, None)).await?;

    if let Some(count) = args.count {
        let make =
            || TaskMessage::new(&args.task, task_args.clone(), task_kwargs.clone(), &options);
        let sent = send_many(&args, &queue, &mut producer, count, make).await;
        producer.close().await;
        return sent;
    }

    let message = TaskMessage::new(&args.task, task_args, task_kwargs, &options);
    let id = message.headers.id.clone();
    // Subscribe before sending, as Celery does, so a fast result is not missed.
    let waiter = match (&settings.result_backend, args.wait) {
        (Some(url), true) => Some(
            ResultBackend::connect(url, &redis(&settings))
                .await?
                .subscribe(&id)
                .await?,
        ),
        _ => None,
    };
    producer.send(&message, &queue).await?;
    producer.flush().await?;
    producer.close().await;
    print_line(&id)?;
    if let Some(waiter) = waiter {
        let meta = waiter.wait(args.timeout).await?;
        print_result(&meta)?;
    }
    Ok(())
}

/// `send --count N [--rate R] [--ids]`: many tasks, as fast as the broker
/// takes them (one pipelined round trip per thousand on Redis, a confirm
/// window on AMQP) or at a steady rate. Ctrl-C or SIGTERM stops it; what was
/// sent by then is still confirmed and counted.
async fn send_many(
    args: &SendArgs,
    queue: &str,
    producer: &mut AnyProducer,
    count: u64,
    make: impl Fn() -> TaskMessage,
) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::new().context("installing signal handlers")?;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        if futures_lite::future::poll_once(shutdown.recv())
            .await
            .is_some()
        {
            break;
        }
        // With a rate: only what is due by now, so the stream stays steady.
        let due = match args.rate {
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as u64).min(count),
            None => count,
        };
        let batch = due.saturating_sub(sent).min(1000);
        if batch == 0 {
            tokio::select! {
                _ = shutdown.recv() => break,
                () = tokio::time::sleep(Duration::from_millis(10)) => continue,
            }
        }
        let messages: Vec<TaskMessage> = (0..batch).map(|_| make()).collect();
        producer.send_batch(&messages, queue).await?;
        if args.ids {
            // An id is printed only once the broker has taken the task.
            producer.flush().await?;
            for message in &messages {
                print_line(&message.headers.id)?;
            }
        }
        sent += batch;
    }
    producer.flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = format!(
        "sent {sent} tasks to '{queue}' in {seconds:.2} s: {:.0} tasks/s",
        sent as f64 / seconds.max(1e-9)
    );
    if args.ids {
        tracing::info!("{summary}");
    } else {
        print_line(summary)?;
    }
    Ok(())
}

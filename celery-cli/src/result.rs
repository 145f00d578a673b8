//! `result ID`: a task's state and result, as `AsyncResult(id).state` and
//! `.result` show them; and the printing `send --wait` shares.

use anyhow::bail;
use celery_core::{
    backend::{ResultBackend, StoredResult, TaskState},
    config::Settings,
    protocol::pyrepr,
};
use shared::cli::print_line;

use crate::args::{ResultArgs, redis};

pub(crate) async fn result(args: ResultArgs, mut settings: Settings) -> anyhow::Result<()> {
    args.backend.apply(&mut settings);
    let Some(url) = &settings.result_backend else {
        bail!(
            "no result backend: pass --result-backend redis://127.0.0.1:6379/8 (or set CELERY_RESULT_BACKEND)"
        );
    };
    let backend = ResultBackend::connect(url, &redis(&settings)).await?;
    match backend.get(&args.task_id).await? {
        Some(meta) => print_result(&meta),
        None => {
            print_line("PENDING None")?;
            Ok(())
        }
    }
}

/// Prints `STATE result` like `AsyncResult.state` / `.result`; a FAILURE or
/// REVOKED also makes the command fail, as `.get()` raises.
pub(crate) fn print_result(stored: &StoredResult) -> anyhow::Result<()> {
    let state = &stored.status;
    match state {
        TaskState::Failure | TaskState::Revoked | TaskState::Retry => {
            let shown = stored.exception().map_or_else(
                || pyrepr::repr(&stored.result),
                |exception| exception.display(),
            );
            print_line(format_args!("{state} {shown}"))?;
            if *state != TaskState::Retry {
                bail!("task {state}: {shown}");
            }
            Ok(())
        }
        _ => {
            print_line(format_args!("{state} {}", pyrepr::repr(&stored.result)))?;
            Ok(())
        }
    }
}

//! `cargo run -p celery-sms-demo -- <worker|send|result|beat>` — the `celery`
//! command of the blog, for its SMS task.
//!
//! Run with
//!
//! ```text
//! cargo run -p celery-sms-demo -- worker -l info                 # celery -A celery_tasks.main worker -l info
//! cargo run -p celery-sms-demo -- send 13800000000 123456        # send_sms_code.delay('13800000000', '123456')
//! cargo run -p celery-sms-demo -- send 13800000000 123456 --wait --result-backend redis://127.0.0.1:6379/8
//! cargo run -p celery-sms-demo -- result <task id> --result-backend redis://127.0.0.1:6379/8
//! cargo run -p celery-sms-demo -- beat --schedule celery-sms-demo/beat-schedule.toml   # celery beat
//! cargo run -p celery-sms-demo -- worker -B --schedule celery-sms-demo/beat-schedule.toml
//! cargo run -p celery-sms-demo -- worker -E                       # task events, for Flower
//! cargo run -p celery-sms-demo -- inspect ping                    # celery inspect ping
//! cargo run -p celery-sms-demo -- control revoke <task id>        # celery control revoke
//! CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p celery-sms-demo -- worker
//! ```

mod cli;

use std::{io::Write, process::ExitCode};

use clap::Parser;
use shared::logging;

// One thread for the event loop: tasks are async and short, and keeping
// them on one thread avoids cross-thread wake-ups (lapin runs its own I/O
// thread; blocking work would go to spawn_blocking's pool). With Redis on
// the other core this measured ~30% faster than the multi-thread scheduler.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // One TLS provider for the process (ring), before anything opens a connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    let _log = logging::init(cli.log.level);
    match cli::run(cli).await {
        // Celery's words and exit status when no worker answered.
        Err(error) if error.is::<cli::remote::NoNodesReplied>() => {
            logging::flush();
            let _ = writeln!(std::io::stderr(), "Error: {error}");
            ExitCode::from(cli::remote::NO_REPLIES_EXIT)
        }
        result => shared::cli::exit_code(result),
    }
}

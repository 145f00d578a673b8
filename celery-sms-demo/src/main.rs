//! `cargo run -p celery-sms-demo -- <worker|send|result|beat|inspect|control|status>`
//! — the `celery` command of the blog, for its SMS task: the app's tasks and
//! flags, handed to `celery_cli`, which gives it Celery's whole command line.
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

use std::process::ExitCode;

use celery_cli::App;
use celery_sms_demo::app::{self, SmsFlags};

fn main() -> ExitCode {
    App::new("celery_tasks")
        .about("The blog's Celery SMS task, as a Rust worker and producer that speak Celery's protocol.")
        .version(env!("CARGO_PKG_VERSION"))
        .default_task("SMS")
        // The blog's broker: `broker_url = 'redis://127.0.0.1/7'`.
        .setting("broker_url", "redis://127.0.0.1:6379/7")
        .flags::<SmsFlags>()
        .tasks_from(app::tasks)
        .main()
}

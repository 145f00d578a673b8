//! The start-up banner, laid out like Celery's (`celery-protocol.md` §E), so
//! the blog's terminal session reads the same with the Rust worker.

use std::fmt::Write;

/// What the banner shows.
#[derive(Debug)]
pub struct BannerInfo<'a> {
    pub hostname: &'a str,
    pub app: &'a str,
    pub transport: String,
    pub results: String,
    pub concurrency: usize,
    pub blocking_pool: usize,
    pub queues: &'a [String],
    /// The registry's task names, sorted.
    pub tasks: Vec<&'a str>,
    /// Task events on from the start (`-E`).
    pub task_events: bool,
}

/// The banner text (goes to stdout, like Celery's).
pub fn banner(info: &BannerInfo<'_>) -> String {
    let platform = format!(
        "{}-{}-{}",
        capitalized(std::env::consts::OS),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| r.trim().to_owned())
            .unwrap_or_default(),
        std::env::consts::ARCH
    );
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
    let art = [
        " -------------- ",
        "--- ***** ----- ",
        "-- ******* ---- ",
        "- *** --- * --- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- *** --- * --- ",
        "-- ******* ---- ",
        "--- ***** ----- ",
        " -------------- ",
    ];
    let lines = [
        format!(
            "{} v{} (celery-core, Celery protocol 2)",
            info.hostname,
            env!("CARGO_PKG_VERSION")
        ),
        String::new(),
        format!("{platform} {now}"),
        String::new(),
        "[config]".to_owned(),
        format!(".> app:         {} (Rust)", info.app),
        format!(".> transport:   {}", info.transport),
        format!(".> results:     {}", info.results),
        format!(
            ".> concurrency: {} (async) + {} (blocking threads)",
            info.concurrency, info.blocking_pool
        ),
        if info.task_events {
            ".> task events: ON".to_owned()
        } else {
            ".> task events: OFF (enable -E to monitor tasks in this worker)".to_owned()
        },
        String::new(),
        "[queues]".to_owned(),
    ];
    let mut out = String::from(" \n");
    for (art, line) in art.iter().zip(lines) {
        let _ = writeln!(out, "{art}{line}");
    }
    for queue in info.queues {
        let _ = writeln!(
            out,
            "                .> {queue:<16} exchange={queue}(direct) key={queue}"
        );
    }
    out.push_str("                \n\n[tasks]\n");
    for task in &info.tasks {
        let _ = writeln!(out, "  . {task}");
    }
    out
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

//! The `celery` command as a library: your tasks in, Celery's command line
//! out — `worker`, `beat`, `send` (Celery's `call`), `result`, `inspect`,
//! `control` and `status`, with Celery's flag names, its banner and log
//! format, warm and cold shutdown on signals, and one-line errors with
//! Celery's exit codes.
//!
//! ```python
//! app = Celery('proj')                    # proj/celery.py
//! @app.task(name='add')
//! def add(x, y): return x + y
//! ```
//! ```text
//! celery -A proj worker -l info -c 8 -Q celery,priority
//! ```
//!
//! is, in Rust, a whole program:
//!
//! ```no_run
//! use celery_cli::App;
//! use celery_core::{registry::Registry, task::{Task, TaskResult}};
//!
//! fn main() -> std::process::ExitCode {
//!     let add = Task::new("add", &["x", "y"], |(x, y): (i64, i64)| async move {
//!         TaskResult::Ok(x + y)
//!     });
//!     App::new("proj").tasks(Registry::new().register(add)).main()
//! }
//! ```
//!
//! and `my-worker worker -l info -c 8 -Q celery,priority`, `my-worker
//! inspect ping`, `my-worker send --task add 2 3 --wait` are Celery's
//! commands. An app with flags of its own (a gateway's URL, an API key)
//! declares them with [`App::flags`] and builds its tasks from them, and from
//! the broker and result backend, with [`App::tasks_from`].
//!
//! Why a crate of its own, and not a feature of `celery-core`: the command
//! line brings clap, a log format, signal handling and exit codes. A program
//! that embeds a worker in a service of its own (with its own flags and
//! logging) depends on `celery-core` alone and builds none of that.
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | [`App`] | what an application hands over: its name, tasks, flags |
//! | `args` | the command line: subcommands, flags, their environment variables |
//! | `worker` | `worker` and `beat` (and `worker -B`) |
//! | `send` | `send` (`apply_async`/`celery call`), `send --count`, `send --canvas` |
//! | `result` | `result` (`AsyncResult`), and how a result is printed |
//! | `remote` | `inspect`, `control`, `status` |

mod args;
mod canvas;
mod remote;
mod result;
mod send;
mod worker;

use std::{ffi::OsString, fmt, future::Future, io::Write, pin::Pin, process::ExitCode};

use celery_core::{
    config::{ConfigError, Settings, Sources},
    redis_connection::RedisOptions,
    registry::Registry,
};
use clap::{Args, CommandFactory, FromArgMatches};
use shared::{SecretUrl, logging};

pub use args::NoFlags;
pub use remote::{NO_REPLIES_EXIT, NoNodesReplied};

type BuildTasks<F> =
    Box<dyn FnOnce(Setup<F>) -> Pin<Box<dyn Future<Output = anyhow::Result<Registry>>>>>;

/// What the application's task builder ([`App::tasks_from`]) gets when
/// `worker` starts: its own flags, and where the worker's broker and result
/// backend are, for tasks that keep records of their own there.
#[derive(Debug)]
#[non_exhaustive]
pub struct Setup<F> {
    /// The application's own flags ([`App::flags`]).
    pub flags: F,
    /// The broker URL (`--broker`, `CELERY_BROKER_URL`).
    pub broker_url: SecretUrl,
    /// The result backend's URL, if there is one.
    pub result_backend: Option<SecretUrl>,
    /// How the worker opens Redis (start-up bound, Sentinel master): open
    /// the task's own connections the same way.
    pub redis: RedisOptions,
}

/// An application: a name, its tasks and, if it has any, flags of its own.
/// [`App::main`] (or [`App::run`]) gives it Celery's whole command line.
pub struct App<F: Args = NoFlags> {
    name: String,
    about: Option<String>,
    version: Option<String>,
    default_task: Option<String>,
    settings: Vec<(String, serde_json::Value)>,
    tasks: BuildTasks<F>,
}

impl<F: Args> fmt::Debug for App<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("default_task", &self.default_task)
            .finish_non_exhaustive()
    }
}

impl App<NoFlags> {
    /// An app named `name` (Celery's `Celery('proj')`: the banner's `app:`
    /// line), with no tasks yet.
    pub fn new(name: &str) -> App<NoFlags> {
        App {
            name: name.to_owned(),
            about: None,
            version: None,
            default_task: None,
            settings: Vec::new(),
            tasks: Box::new(|_| Box::pin(async { Ok(Registry::new()) })),
        }
    }

    /// Adds the application's own flags to `worker`: a `clap::Args` struct
    /// (`#[arg(long, env = "SMS_GATEWAY")]`), handed to [`App::tasks_from`]'s
    /// builder. Call it before `tasks_from`, which gets them typed.
    pub fn flags<G: Args>(self) -> App<G> {
        App {
            name: self.name,
            about: self.about,
            version: self.version,
            default_task: self.default_task,
            settings: self.settings,
            tasks: Box::new(|_| Box::pin(async { Ok(Registry::new()) })),
        }
    }
}

impl<F: Args + 'static> App<F> {
    /// The tasks, when they need nothing from the command line.
    pub fn tasks(mut self, registry: Registry) -> App<F> {
        self.tasks = Box::new(move |_| Box::pin(async move { Ok(registry) }));
        self
    }

    /// The tasks, built when `worker` starts from the app's flags and the
    /// worker's settings ([`Setup`]): for tasks that open a connection of
    /// their own first. An error stops the worker with that one line.
    pub fn tasks_from<B, Fut>(mut self, build: B) -> App<F>
    where
        B: FnOnce(Setup<F>) -> Fut + 'static,
        Fut: Future<Output = anyhow::Result<Registry>> + 'static,
    {
        self.tasks = Box::new(move |setup| Box::pin(build(setup)));
        self
    }

    /// A default for one of Celery's settings, by its name, as a
    /// `celeryconfig.py` sets it: `.setting("broker_url",
    /// "redis://127.0.0.1:6379/7")`, `.setting("worker_concurrency", 8)`.
    /// The configuration file, `CELERY_<NAME>` variables and flags override
    /// it; a name that is not a setting stops every command with an error.
    pub fn setting(mut self, name: &str, value: impl Into<serde_json::Value>) -> App<F> {
        self.settings.push((name.to_owned(), value.into()));
        self
    }

    /// The task `send` sends when no `--task` is given (the blog's `SMS`).
    /// Without one, `send` needs `--task`.
    pub fn default_task(mut self, name: &str) -> App<F> {
        self.default_task = Some(name.to_owned());
        self
    }

    /// The one line `--help` opens with.
    pub fn about(mut self, about: &str) -> App<F> {
        self.about = Some(about.to_owned());
        self
    }

    /// What `--version` prints (usually `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: &str) -> App<F> {
        self.version = Some(version.to_owned());
        self
    }

    /// Runs the command line of this process on a runtime of its own, and
    /// returns the exit code: `fn main() -> ExitCode { App::new(…)….main() }`.
    ///
    /// One thread for the event loop: tasks are async and short, and
    /// keeping them on one thread avoids cross-thread wake-ups (lapin runs
    /// its own I/O thread; blocking tasks have a pool of their own). With
    /// Redis on the other core this measured ~30% faster than tokio's
    /// multi-thread scheduler.
    pub fn main(self) -> ExitCode {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run()),
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "error: cannot start tokio: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// [`App::main`] on a runtime the program already has.
    pub async fn run(self) -> ExitCode {
        self.run_from(std::env::args_os()).await
    }

    /// Runs the command line `args` (the program's name first) in this
    /// process, as the shell would run it, and returns its exit code: what
    /// tests drive. Usage errors and `--help` print as clap prints them, with
    /// its exit codes (2 and 0), without ending the process.
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        // One TLS provider for the process (ring, which lapin and redis are
        // built with), before anything opens a connection. An app that
        // installed its own first keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cli = match self.parse(args) {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
            }
        };
        let _log = logging::init(cli.log.level);
        // The worker writes the buffered log lines out before it acks.
        celery_core::logs::flush_with(logging::flush);
        match self.execute(cli).await {
            // Celery's words and exit status when no worker answered.
            Err(error) if error.is::<NoNodesReplied>() => {
                logging::flush();
                let _ = writeln!(std::io::stderr(), "Error: {error}");
                ExitCode::from(NO_REPLIES_EXIT)
            }
            // A bad setting is a usage error, as a bad flag is: exit code 2.
            Err(error) if error.is::<ConfigError>() => {
                logging::flush();
                let _ = writeln!(std::io::stderr(), "error: {error}");
                ExitCode::from(2)
            }
            result => shared::cli::exit_code(result),
        }
    }

    /// The command line as this app's clap command: its name, help, version
    /// and `send`'s default task.
    pub fn command(&self) -> clap::Command {
        let mut command = args::Cli::<F>::command();
        if let Some(about) = &self.about {
            command = command.about(about.clone());
        }
        if let Some(version) = &self.version {
            command = command.version(version.clone());
        }
        if let Some(task) = &self.default_task {
            command = command.mut_subcommand("send", |send| {
                send.mut_arg("task", |arg| {
                    arg.default_value(task.clone()).required(false)
                })
            });
        }
        command
    }

    /// Celery's settings from the environment, the file and the app's
    /// defaults; the command's flags go over them.
    fn settings(&self, file: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        let mut sources = Sources::from_env();
        for (name, value) in &self.settings {
            sources = sources.app_default(name, value.clone());
        }
        if let Some(path) = file {
            sources = sources.file(path)?;
        }
        Settings::load(&sources)
    }

    fn parse<I, T>(&self, args: I) -> Result<args::Cli<F>, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut command = self.command();
        // `--version` and usage lines name the program as it was started.
        let program = args.first().map(std::path::Path::new);
        if let Some(name) = program.and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
            command = command.name(name.to_owned());
        }
        let matches = command.try_get_matches_from_mut(args)?;
        args::Cli::<F>::from_arg_matches(&matches).map_err(|error| error.format(&mut command))
    }

    async fn execute(self, cli: args::Cli<F>) -> anyhow::Result<()> {
        use args::Command;
        // Each command's future is boxed: together they nest too deep for
        // the compiler to lay out one future holding them all.
        let settings = self.settings(cli.config.as_deref())?;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let command: Pin<Box<dyn Future<Output = anyhow::Result<()>>>> = match cli.command {
            Command::Worker(args) => {
                Box::pin(worker::run_worker(args, settings, &self.name, self.tasks))
            }
            Command::Beat(args) => Box::pin(worker::run_beat(args, settings)),
            Command::Send(args) => Box::pin(send::send(args, settings)),
            Command::Result(args) => Box::pin(result::result(args, settings)),
            Command::Inspect(args) => Box::pin(remote::inspect(args, settings)),
            Command::Control(command) => Box::pin(remote::control(command, settings)),
            Command::Status(args) => Box::pin(remote::status(args, settings)),
        };
        command.await
    }
}

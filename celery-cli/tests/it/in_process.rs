//! The command line driven in-process, through [`App::run_from`]: what a
//! program built on `celery_cli` answers before it touches a broker.

use std::process::ExitCode;

use celery_cli::{App, NoFlags};
use celery_core::{
    registry::Registry,
    task::{Task, TaskResult},
};

fn app() -> App<NoFlags> {
    let add = Task::new("add", &["x", "y"], |(x, y): (i64, i64)| async move {
        TaskResult::Ok(x + y)
    });
    App::new("proj").tasks(Registry::new().register(add))
}

/// The app's own flags, flattened into `worker`.
#[derive(clap::Args, Debug)]
struct GatewayFlags {
    /// The gateway's URL.
    #[arg(long, env = "PROJ_GATEWAY_URL")]
    gateway_url: Option<String>,
}

#[test]
fn the_command_line_is_consistent() {
    app().command().debug_assert();
    App::new("proj")
        .flags::<GatewayFlags>()
        .default_task("add")
        .command()
        .debug_assert();
}

#[test]
fn every_celery_subcommand_is_there() {
    let command = app().command();
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    for name in [
        "worker", "beat", "send", "result", "inspect", "control", "status",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[test]
fn the_apps_own_flags_join_the_workers() {
    let command = App::new("proj").flags::<GatewayFlags>().command();
    let worker = command.find_subcommand("worker").unwrap();
    let ids: Vec<&str> = worker
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .collect();
    assert!(ids.contains(&"gateway_url"), "{ids:?}");
    assert!(ids.contains(&"concurrency"), "{ids:?}");
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_exits_0_without_ending_the_process() {
    let code = app().run_from(["proj", "send", "--args", "[1,"]).await;
    assert_eq!(code, ExitCode::from(2));
    let code = app().run_from(["proj", "worker", "-c", "0"]).await;
    assert_eq!(code, ExitCode::from(2));
    let code = app().run_from(["proj", "send"]).await;
    assert_eq!(
        code,
        ExitCode::from(2),
        "send needs --task when the app names no default"
    );
    let code = app().run_from(["proj", "--help"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
}

#[tokio::test]
async fn a_command_that_fails_returns_1() {
    // No result backend: `result` fails at once, before any connection.
    let code = app().run_from(["proj", "result", "some-id"]).await;
    assert_eq!(code, ExitCode::FAILURE);
}

#[tokio::test]
async fn a_bad_configuration_file_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("celery-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let misspelt = dir.join("misspelt.toml");
    std::fs::write(&misspelt, "worker_concurency = 4\n").unwrap();
    let path = misspelt.to_str().unwrap();
    let code = app().run_from(["proj", "--config", path, "status"]).await;
    assert_eq!(code, ExitCode::from(2));
    let missing = dir.join("missing.toml");
    let code = app()
        .run_from([
            "proj",
            "result",
            "id",
            "--config",
            missing.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, ExitCode::from(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_apps_default_that_is_not_a_setting_stops_every_command() {
    let code = app()
        .setting("brokr_url", "redis://127.0.0.1:6379/7")
        .run_from(["proj", "result", "id"])
        .await;
    assert_eq!(code, ExitCode::from(2));
}

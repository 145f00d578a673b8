//! Test-only file, compiled under `#[cfg(test)]` (see `mod.rs`).
//!
//! The settings' sources and checks, without a file system or the
//! process's environment.

use std::{collections::HashMap, path::Path, time::Duration};

use amqp_connect::QueueType;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Sources {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Sources::with_env(move |name| map.get(name).cloned())
}

fn file(sources: Sources, text: &str) -> Result<Sources, ConfigError> {
    sources.file_text(Path::new("celeryconfig.toml"), text)
}

fn error(result: Result<impl std::fmt::Debug, ConfigError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn nothing_set_is_celerys_defaults() {
    let settings = Settings::load(&env(&[])).unwrap();
    assert_eq!(settings, Settings::default());
    assert_eq!(
        settings.broker_url.expose(),
        "amqp://guest:guest@localhost:5672//"
    );
    assert_eq!(settings.task_default_queue, "celery");
    assert_eq!(settings.worker_prefetch_multiplier, 4);
}

#[test]
fn the_environment_overrides_the_file_which_overrides_the_app() {
    let sources = env(&[("CELERY_WORKER_CONCURRENCY", "8")])
        .app_default("worker_concurrency", 2)
        .app_default("task_default_queue", "app")
        .app_default("broker_url", "redis://127.0.0.1:6379/7");
    let sources = file(
        sources,
        "worker_concurrency = 4\ntask_default_queue = \"file\"\n",
    )
    .unwrap();
    let settings = Settings::load(&sources).unwrap();
    assert_eq!(settings.worker_concurrency, Some(8));
    assert_eq!(settings.task_default_queue, "file");
    assert_eq!(settings.broker_url.expose(), "redis://127.0.0.1:6379/7");
}

#[test]
fn structured_settings_are_json_in_the_environment_and_tables_in_the_file() {
    let from_env = env(&[(
        "CELERY_BROKER_TRANSPORT_OPTIONS",
        r#"{"visibility_timeout": 600, "master_name": "mymaster"}"#,
    )]);
    let settings = Settings::load(&from_env).unwrap();
    assert_eq!(
        settings.broker_transport_options.visibility_timeout,
        Duration::from_secs(600)
    );
    assert_eq!(
        settings.broker_transport_options.master_name.as_deref(),
        Some("mymaster")
    );
    let from_file = file(
        env(&[]),
        "[broker_transport_options]\nvisibility_timeout = 60.5\n",
    )
    .unwrap();
    let settings = Settings::load(&from_file).unwrap();
    assert_eq!(
        settings.broker_transport_options.visibility_timeout,
        Duration::from_secs_f64(60.5)
    );
}

#[test]
fn the_variables_of_earlier_releases_still_work() {
    let settings = Settings::load(&env(&[
        ("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3"),
        ("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/4"),
        ("CELERY_TASK_DEFAULT_QUEUE_TYPE", "quorum"),
        ("CELERY_SENTINEL_MASTER", "mymaster"),
        ("CELERY_CONNECT_TIMEOUT", "2.5"),
    ]))
    .unwrap();
    assert_eq!(settings.broker_url.expose(), "redis://127.0.0.1:6379/3");
    assert_eq!(
        settings.result_backend.as_ref().map(|url| url.expose()),
        Some("redis://127.0.0.1:6379/4")
    );
    assert_eq!(settings.task_default_queue_type, QueueType::Quorum);
    assert_eq!(
        settings
            .result_backend_transport_options
            .master_name
            .as_deref(),
        Some("mymaster")
    );
    assert_eq!(settings.connect_timeout, Duration::from_secs_f64(2.5));
}

#[test]
fn a_bad_value_names_the_setting_where_it_came_from_and_what_it_expects() {
    let message = error(Settings::load(&env(&[(
        "CELERY_WORKER_CONCURRENCY",
        "lots",
    )])));
    assert_eq!(
        message,
        "setting worker_concurrency (the variable CELERY_WORKER_CONCURRENCY): expected a whole number from 1 to 10000, got 'lots'"
    );
    let sources = file(
        env(&[]),
        "# a comment\n\nworker_prefetch_multiplier = \"x\"\n",
    )
    .unwrap();
    assert_eq!(
        error(Settings::load(&sources)),
        "setting worker_prefetch_multiplier (celeryconfig.toml:3): expected a whole number from 1 to 1000, got \"x\""
    );
    let message = error(Settings::load(&env(&[(
        "CELERY_BROKER_TRANSPORT_OPTIONS",
        "{visibility_timeout: 1}",
    )])));
    assert!(
        message.starts_with(
            "setting broker_transport_options (the variable CELERY_BROKER_TRANSPORT_OPTIONS): not JSON"
        ),
        "{message}"
    );
    let sources = file(env(&[]), "broker_transport_options = 3\n").unwrap();
    assert_eq!(
        error(Settings::load(&sources)),
        "setting broker_transport_options (celeryconfig.toml:1): expected a table (a JSON object), got 3"
    );
    let sources = file(
        env(&[]),
        "[broker_transport_options]\nvisibility_timeout = -1\n",
    )
    .unwrap();
    assert_eq!(
        error(Settings::load(&sources)),
        "setting broker_transport_options.visibility_timeout (celeryconfig.toml:1): expected a number of seconds from 1 to 2592000, got -1"
    );
}

#[test]
fn a_misspelt_setting_is_an_error_that_names_the_closest() {
    let message = error(file(env(&[]), "\nworker_concurency = 4\n"));
    assert_eq!(
        message,
        "celeryconfig.toml:2: unknown setting 'worker_concurency'; did you mean 'worker_concurrency'?"
    );
    let message = error(file(env(&[]), "colour = \"red\"\n"));
    assert!(message.contains("unknown setting 'colour'"), "{message}");
    let message = error(Settings::load(&env(&[]).app_default("brokr_url", "x")));
    assert_eq!(
        message,
        "the app's defaults: unknown setting 'brokr_url'; did you mean 'broker_url'?"
    );
}

#[test]
fn a_celery_setting_not_supported_yet_is_a_warning_not_silence() {
    let sources = file(
        env(&[]),
        "task_annotations = { add = { rate_limit = \"10/s\" } }\n[broker_transport_options]\nglobal_keyprefix = \"app1_\"\n",
    )
    .unwrap();
    let settings = Settings::load(&sources).unwrap();
    assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
    assert!(
        settings.warnings[0]
            .contains("celeryconfig.toml:1: Celery's setting task_annotations is not supported")
    );
    assert!(
        settings.warnings[1].contains("broker_transport_options.global_keyprefix is not supported")
    );
}

#[test]
fn a_file_that_is_not_toml_says_where() {
    let message = error(file(env(&[]), "worker_concurrency = 4\nthis is not toml\n"));
    assert!(
        message.starts_with("celeryconfig.toml:2: not a TOML configuration file:"),
        "{message}"
    );
}

#[test]
fn a_url_with_a_password_is_never_shown() {
    let settings = Settings::load(&env(&[(
        "CELERY_BROKER_URL",
        "amqp://app:s3cret@rabbit:5672/%2f",
    )]))
    .unwrap();
    assert!(!format!("{settings:?}").contains("s3cret"));
}

#[test]
fn every_supported_setting_is_celerys_or_marked_ours() {
    let ours = ["connect_timeout", "worker_blocking_threads"];
    for name in SUPPORTED {
        assert!(
            CELERY_SETTINGS.contains(name) || ours.contains(name),
            "{name} is neither Celery's nor listed as ours"
        );
    }
    assert_eq!(CELERY_SETTINGS.len(), 207, "Celery 5.7 has 207 settings");
}

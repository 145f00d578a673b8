//! The settings' names against the real Celery 5.7 in the venv: the list
//! `celery_core::config` tells misspelt names from Celery's own by is
//! Celery's, and every name we read is one of Celery's (or marked ours).

use std::process::Command;

use celery_core::config::{CELERY_SETTINGS, SUPPORTED};

use shared::testing::venv_python as python;

#[test]
fn the_list_matches_celerys() {
    let output = Command::new(python())
        .args([
            "-c",
            "from celery.app.defaults import NAMESPACES, flatten\nfor name, _ in flatten(NAMESPACES): print(name)",
        ])
        .output()
        .expect("run scripts/python-env first (scripts/test does)");
    assert!(output.status.success(), "{output:?}");
    let celerys: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(CELERY_SETTINGS, celerys.as_slice());
    let ours = ["connect_timeout", "worker_blocking_threads"];
    for name in SUPPORTED {
        assert!(
            celerys.iter().any(|celery| celery == name) || ours.contains(name),
            "{name}"
        );
    }
}

//! Every flag and environment variable of every subcommand, fed hostile
//! values (huge numbers, NaN, empty and non-UTF-8 text, odd URLs and times):
//! none may panic. See `shared::testing::Sweep`.

const DEMO: &str = env!("CARGO_BIN_EXE_celery-sms-demo");

/// Nothing is listening on port 1: every run ends at its first connect.
const DEAD: [(&str, &str); 3] = [
    ("--broker", "redis://127.0.0.1:1/0"),
    ("--result-backend", "redis://127.0.0.1:1/1"),
    ("--connect-timeout", "0.1"),
];

fn sweep(command: &str, positional: &[&str]) {
    let base: &[(&str, &str)] = if command == "result" {
        &DEAD[1..]
    } else {
        &DEAD
    };
    let problems = shared::testing::Sweep {
        binary: DEMO,
        command: &[command],
        base,
        positional,
        ..Default::default()
    }
    .run();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn no_worker_flag_value_panics() {
    sweep("worker", &[]);
}

#[test]
fn no_send_flag_value_panics() {
    sweep("send", &["13800000000", "123456"]);
}

#[test]
fn no_result_flag_value_panics() {
    sweep("result", &["some-task-id"]);
}

#[test]
fn no_beat_flag_value_panics() {
    sweep("beat", &[]);
}

#[test]
fn help_shows_no_password() {
    for command in ["worker", "send", "result", "beat"] {
        shared::testing::assert_help_hides_passwords(DEMO, &[command]);
    }
}

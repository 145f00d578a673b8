//! Every flag and environment variable of every subcommand, fed hostile
//! values (huge numbers, NaN, empty and non-UTF-8 text, odd URLs and times):
//! none may panic. See `shared::testing::Sweep`.

const DEMO: &str = env!("CARGO_BIN_EXE_celery-sms-demo");

/// Nothing is listening on port 1: every run ends at its first connect.
const DEAD: [(&str, &str); 3] = [
    ("--broker", "redis://127.0.0.1:1/0"),
    ("--result-backend", "redis://127.0.0.1:1/1"),
    // Short: a refused connect is retried until this runs out.
    ("--connect-timeout", "0.01"),
];

fn sweep(command: &str, positional: &[&str]) {
    sweep_command(&[command], positional);
}

fn sweep_command(command: &[&str], positional: &[&str]) {
    let base: &[(&str, &str)] = if command == ["result"] {
        &DEAD[1..]
    } else {
        &DEAD
    };
    let problems = shared::testing::Sweep {
        binary: DEMO,
        command,
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

/// The SMS gateway's settings are variables, not flags: each one swept with
/// the others valid, so the value reaches the gateway's checks.
#[test]
fn no_gateway_variable_value_panics() {
    let problems = shared::testing::Sweep {
        binary: DEMO,
        command: &["worker"],
        base: &DEAD,
        base_env: &[
            ("SMS_GATEWAY", "ronglian"),
            ("RONGLIAN_ACCOUNT_SID", "8aaf0708697b6beb0169c1f12db32e2a"),
            ("RONGLIAN_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("RONGLIAN_APP_ID", "8aaf0708697b6beb0169c1f12e082e30"),
        ],
        variables: &[
            "SMS_GATEWAY",
            "RONGLIAN_ACCOUNT_SID",
            "RONGLIAN_AUTH_TOKEN",
            "RONGLIAN_APP_ID",
            "RONGLIAN_BASE_URL",
            "RONGLIAN_TIMEOUT_SECS",
            "RUST_LOG",
        ],
        only_variables: true,
        ..Default::default()
    }
    .run();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
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
fn no_inspect_flag_value_panics() {
    sweep("inspect", &["ping"]);
}

#[test]
fn no_status_flag_value_panics() {
    sweep("status", &[]);
}

#[test]
fn no_control_flag_value_panics() {
    sweep_command(&["control", "revoke"], &["some-task-id"]);
}

#[test]
fn help_shows_no_password() {
    for command in ["worker", "send", "result", "beat", "inspect", "status"] {
        shared::testing::assert_help_hides_passwords(DEMO, &[command]);
    }
}

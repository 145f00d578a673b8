//! Bad input to the tutorial binaries: one `error:` line and a non-zero exit,
//! never a panic; and no password in any `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shared::testing::{Sweep, assert_help_hides_passwords, run_cli};

const BINARIES: [&str; 11] = [
    env!("CARGO_BIN_EXE_new_task"),
    env!("CARGO_BIN_EXE_worker"),
    env!("CARGO_BIN_EXE_emit_log"),
    env!("CARGO_BIN_EXE_receive_logs"),
    env!("CARGO_BIN_EXE_emit_log_direct"),
    env!("CARGO_BIN_EXE_receive_logs_direct"),
    env!("CARGO_BIN_EXE_emit_log_topic"),
    env!("CARGO_BIN_EXE_receive_logs_topic"),
    env!("CARGO_BIN_EXE_rpc_server"),
    env!("CARGO_BIN_EXE_rpc_client"),
    env!("CARGO_BIN_EXE_publisher_confirms"),
];

/// Points a binary at a broker that is not there.
const NO_BROKER: [&str; 4] = [
    "--amqp-url",
    "amqp://guest:s3cret@127.0.0.1:1/%2f",
    "--connect-timeout",
    "0.2",
];

#[test]
fn every_binary_reports_a_missing_broker_in_one_line_without_the_password() {
    for binary in BINARIES {
        let mut args = NO_BROKER.to_vec();
        if binary.ends_with("receive_logs_direct") || binary.ends_with("receive_logs_topic") {
            args.push("info");
        }
        let output = run_cli(binary, &args, Duration::from_secs(20));
        output.assert_one_line_error(&["not reachable", "amqp://guest:**@127.0.0.1:1"]);
        assert!(
            !output.stderr.contains("s3cret"),
            "{binary}: {}",
            output.stderr
        );
    }
}

#[test]
fn receivers_without_bindings_say_what_to_give() {
    for (binary, needle) in [
        (
            env!("CARGO_BIN_EXE_receive_logs_direct"),
            "no SEVERITY given",
        ),
        (
            env!("CARGO_BIN_EXE_receive_logs_topic"),
            "no BINDING_KEY given",
        ),
    ] {
        run_cli(binary, &NO_BROKER, Duration::from_secs(20))
            .assert_one_line_error(&[needle, "e.g."]);
    }
}

#[test]
fn out_of_range_numbers_are_refused_before_connecting() {
    let client = env!("CARGO_BIN_EXE_rpc_client");
    for args in [
        &["94"][..],
        &["-1"],
        &["x"],
        &["--timeout", "0"],
        &["--calls", "0"],
        &["--concurrency", "0"],
    ] {
        // Pointed at no broker: a value that got through would end in
        // "not reachable" instead of clap's refusal.
        let with_no_broker: Vec<&str> = NO_BROKER.iter().chain(args).copied().collect();
        let output = run_cli(client, &with_no_broker, Duration::from_secs(20));
        output.assert_one_line_error(&[args[args.len() - 1]]);
        assert!(
            !output.stderr.contains("not reachable"),
            "{args:?} got through: {}",
            output.stderr
        );
    }
    let confirms = env!("CARGO_BIN_EXE_publisher_confirms");
    let with_no_broker: Vec<&str> = NO_BROKER.iter().chain(&["0"]).copied().collect();
    run_cli(confirms, &with_no_broker, Duration::from_secs(20))
        .assert_one_line_error(&["invalid value", "0"]);
}

#[test]
fn help_shows_no_password() {
    for binary in BINARIES {
        assert_help_hides_passwords(binary, &[]);
    }
}

/// Swept: the binaries with flags of their own. The connection flags are the
/// same `shared` code in all eleven, so sweeping them twice is enough.
#[test]
fn no_flag_value_panics() {
    let mut problems = Vec::new();
    for binary in [
        env!("CARGO_BIN_EXE_worker"),
        env!("CARGO_BIN_EXE_rpc_client"),
    ] {
        problems.extend(
            Sweep {
                binary,
                base: &[
                    ("--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"),
                    ("--connect-timeout", "0.01"),
                ],
                ..Sweep::default()
            }
            .run(),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

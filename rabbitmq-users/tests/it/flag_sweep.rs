//! Every flag and environment variable of `rabbitmq-users`, and the
//! arguments of its commands, fed hostile values (huge numbers, NaN, empty
//! and non-UTF-8 text, odd URLs and regexes): none may panic. See
//! `shared::testing::Sweep`.

use shared::testing::Sweep;

const USERS: &str = env!("CARGO_BIN_EXE_rabbitmq-users");

/// No management API listens on port 1: every run ends at its first call.
const DEAD_API: [(&str, &str); 2] = [
    ("RABBITMQ_API_URL", "http://127.0.0.1:1"),
    ("RABBITMQ_API_TIMEOUT", "0.2"),
];

#[test]
fn no_global_flag_value_panics() {
    let problems = Sweep {
        binary: USERS,
        base: &[
            ("--api-url", "http://127.0.0.1:1"),
            ("--api-timeout", "0.2"),
        ],
        positional: &["list-users"],
        ..Sweep::default()
    }
    .run();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn no_command_argument_panics() {
    for (command, positional) in [
        ("add-user", &["name", "password"][..]),
        ("set-user-tags", &["name", "administrator"]),
        ("set-permissions", &["name", ".*", ".*", ".*"]),
        ("delete-user", &["name"]),
        ("list-permissions", &[]),
    ] {
        let problems = Sweep {
            binary: USERS,
            command: &[command],
            base_env: &DEAD_API,
            positional,
            ..Sweep::default()
        }
        .run();
        assert!(problems.is_empty(), "{command}: {}", problems.join("\n\n"));
    }
}

#[test]
fn help_shows_no_password() {
    for command in [&[][..], &["add-user"]] {
        shared::testing::assert_help_hides_passwords(USERS, command);
    }
}

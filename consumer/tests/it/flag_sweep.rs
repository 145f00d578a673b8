//! Every flag and environment variable of `consumer`, fed hostile values
//! (huge numbers, NaN, empty and non-UTF-8 text, odd URLs): none may panic.
//! See `shared::testing::Sweep`.

use shared::testing::Sweep;

#[test]
fn no_flag_value_panics() {
    let problems = Sweep {
        binary: env!("CARGO_BIN_EXE_consumer"),
        base: &[
            ("--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("--connect-timeout", "0.01"),
        ],
        ..Sweep::default()
    }
    .run();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn help_shows_no_password() {
    shared::testing::assert_help_hides_passwords(env!("CARGO_BIN_EXE_consumer"), &[]);
}

//! The `rabbitmq-users` binary: the blog's terminal session line for line,
//! and every mistake answered with one `error:` line, exit code 1, no panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use common::{BIN, LIMIT, UserGuard};
use shared::testing::{CliOutput, run_cli, unique_name};

fn cli(args: &[&str]) -> CliOutput {
    run_cli(BIN, args, LIMIT)
}

/// Like `run_cli`, with the new-user password variable set to `password` (or
/// removed), so the result does not depend on the caller's environment.
fn cli_with_password_env(args: &[&str], password: Option<&str>) -> CliOutput {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match password {
        Some(password) => command.env("RABBITMQ_NEW_USER_PASSWORD", password),
        None => command.env_remove("RABBITMQ_NEW_USER_PASSWORD"),
    };
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_success(output: &CliOutput) {
    assert_eq!(output.code, Some(0), "{output:?}");
}

/// A user that exists for the length of the test.
fn existing_user(prefix: &str, password: &str) -> UserGuard {
    let user = UserGuard::new(prefix);
    assert_success(&cli(&["add-user", &user.name, password]));
    user
}

#[test]
fn the_blogs_session_line_for_line() {
    let user = UserGuard::new("rmq-users-cli");
    let name = user.name.as_str();
    let password = "cli-session-password";

    // The password comes from the environment: not in argv, not printed, not
    // logged even at -l debug.
    let added = cli_with_password_env(&["-l", "debug", "add-user", name], Some(password));
    assert_success(&added);
    assert_eq!(added.stdout, format!("Creating user \"{name}\"\n"));
    assert!(
        !added.stdout.contains(password) && !added.stderr.contains(password),
        "password leaked: {added:?}"
    );

    // rabbitmqctl's underscore spelling works too, so the blog's lines paste.
    let tagged = cli(&["set_user_tags", name, "administrator"]);
    assert_success(&tagged);
    assert_eq!(
        tagged.stdout,
        format!("Setting tags for user \"{name}\" to [administrator]\n")
    );

    let granted = cli(&["set-permissions", "-p", "/", name, ".*", ".*", ".*"]);
    assert_success(&granted);
    assert_eq!(
        granted.stdout,
        format!("Setting permissions for user \"{name}\" in vhost \"/\"\n")
    );

    let listed = cli(&["list-users"]);
    assert_success(&listed);
    assert!(listed.stdout.starts_with("Listing users\n"), "{listed:?}");
    assert!(
        listed
            .stdout
            .contains(&format!("\n{name}\t[administrator]\n")),
        "{listed:?}"
    );

    let permissions = cli(&["list-permissions", "-p", "/"]);
    assert_success(&permissions);
    assert!(
        permissions
            .stdout
            .starts_with("Listing permissions for vhost \"/\"\n"),
        "{permissions:?}"
    );
    assert!(
        permissions
            .stdout
            .contains(&format!("\n{name}\t.*\t.*\t.*\n")),
        "{permissions:?}"
    );

    let deleted = cli(&["delete-user", name]);
    assert_success(&deleted);
    assert_eq!(deleted.stdout, format!("Deleting user \"{name}\"\n"));
}

#[test]
fn add_user_refuses_a_user_that_exists() {
    let user = existing_user("rmq-users-cli-exists", "first-password");
    let again = cli(&["add-user", &user.name, "second-password"]);
    again.assert_one_line_error(&["already exists", &user.name, "delete-user"]);
    assert!(!again.stderr.contains("second-password"), "{again:?}");
}

#[test]
fn commands_on_a_missing_user_say_it_does_not_exist() {
    let name = unique_name("rmq-users-cli-missing");
    for args in [
        vec!["set-user-tags", &name, "administrator"],
        vec!["set-permissions", "-p", "/", &name, ".*", ".*", ".*"],
        vec!["delete-user", &name],
    ] {
        cli(&args).assert_one_line_error(&["user", &name, "does not exist", "add-user"]);
    }
}

#[test]
fn a_missing_vhost_is_named() {
    let user = existing_user("rmq-users-cli-vhost", "vhost-password");
    let vhost = unique_name("rmq-users-no-such-vhost");
    cli(&[
        "set-permissions",
        "-p",
        &vhost,
        &user.name,
        ".*",
        ".*",
        ".*",
    ])
    .assert_one_line_error(&["vhost", &vhost, "does not exist", "add_vhost"]);
    cli(&["list-permissions", "-p", &vhost]).assert_one_line_error(&[
        "vhost",
        &vhost,
        "does not exist",
    ]);
}

#[test]
fn wrong_admin_password_is_a_401_that_names_the_flags() {
    let output = cli(&["--admin-password", "wrong-admin-password", "list-users"]);
    output.assert_one_line_error(&["401", "Login failed", "--admin-password"]);
    assert!(
        !output.stderr.contains("wrong-admin-password"),
        "password leaked: {output:?}"
    );
}

#[test]
fn an_admin_user_that_is_not_an_administrator_is_told_which_tag_it_needs() {
    let user = existing_user("rmq-users-cli-notadmin", "not-admin-password");
    let as_user = |args: &[&str]| {
        let mut all = vec![
            "--admin-user",
            user.name.as_str(),
            "--admin-password",
            "not-admin-password",
        ];
        all.extend_from_slice(args);
        cli(&all)
    };
    // No tags at all: RabbitMQ says "Not management user".
    as_user(&["list-users"]).assert_one_line_error(&[
        "is not an administrator",
        &user.name,
        "Not management user",
        "set_user_tags",
    ]);
    // A management user logs in, but may not manage users.
    assert_success(&cli(&["set-user-tags", &user.name, "management"]));
    as_user(&["add-user", &unique_name("rmq-users-never"), "pw"])
        .assert_one_line_error(&["is not an administrator", "Not administrator user"]);
}

#[test]
fn nothing_listening_on_the_api_port_says_to_enable_the_plugin() {
    for args in [
        vec!["list-users"],
        vec!["add-user", "someone", "some-password"],
        vec!["delete-user", "someone"],
    ] {
        let mut all = vec!["--api-url", "http://127.0.0.1:1"];
        all.extend(args);
        cli(&all).assert_one_line_error(&[
            "not reachable",
            "http://127.0.0.1:1/api",
            "rabbitmq-plugins enable rabbitmq_management",
        ]);
    }
}

#[test]
fn a_malformed_regex_is_refused_before_anything_is_sent() {
    // The API URL points nowhere: the error can only have been found locally.
    cli(&[
        "--api-url",
        "http://127.0.0.1:1",
        "set-permissions",
        "someone",
        "(",
        ".*",
        ".*",
    ])
    .assert_one_line_error(&[
        "invalid configure regex \"(\"",
        "unclosed group",
        "checked before sending",
    ]);
}

#[test]
fn pcre_judges_what_the_regex_crate_cannot() {
    let user = existing_user("rmq-users-cli-pcre", "pcre-password");
    // Valid PCRE, unknown to the regex crate: it must reach RabbitMQ and pass.
    assert_success(&cli(&[
        "set-permissions",
        &user.name,
        "^(?!amq\\.).*",
        ".*",
        ".*",
    ]));
    let listed = cli(&["list-permissions"]);
    assert!(
        listed
            .stdout
            .contains(&format!("\n{}\t^(?!amq\\.).*\t.*\t.*\n", user.name)),
        "{listed:?}"
    );
    // Invalid PCRE the local check lets through: RabbitMQ's 400, decoded.
    cli(&["set-permissions", &user.name, ".*", "(?<=a+)b", ".*"]).assert_one_line_error(&[
        "invalid write regex \"(?<=a+)b\"",
        "lookbehind assertion is not fixed length",
        "refused by RabbitMQ",
    ]);
}

#[test]
fn no_password_and_no_terminal_is_an_error_not_a_hang() {
    let user = UserGuard::new("rmq-users-cli-nopw");
    let output = cli_with_password_env(&["add-user", &user.name], None);
    output.assert_one_line_error(&["no password", &user.name, "RABBITMQ_NEW_USER_PASSWORD"]);
    let listed = cli(&["list-users"]);
    assert!(
        !listed.stdout.contains(&format!("\n{}\t", user.name)),
        "created anyway: {listed:?}"
    );
}

#[test]
fn an_empty_password_is_refused() {
    let user = UserGuard::new("rmq-users-cli-emptypw");
    cli(&["add-user", &user.name, ""]).assert_one_line_error(&["password is empty"]);
}

#[test]
fn a_url_that_is_not_http_is_refused() {
    cli(&[
        "--api-url",
        "amqp://guest:secret@127.0.0.1:5672",
        "list-users",
    ])
    .assert_one_line_error(&["invalid management API URL", "http://", "guest:**@"]);
}

//! Bad input to the `consumer` binary: one clear line, a non-zero exit, no panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use shared::testing::{amqp_url, delete_queue, run_cli, unique_name};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");
const LIMIT: Duration = Duration::from_secs(30);

fn with_url(url: &str, extra: &[&str]) -> shared::testing::CliOutput {
    let mut args = vec!["--amqp-url", url, "--count", "1", "--connect-timeout", "1"];
    args.extend_from_slice(extra);
    run_cli(CONSUMER, &args, LIMIT)
}

#[test]
fn malformed_url() {
    with_url("amqp://guest:secret@127.0.0.1:notaport/%2f", &[]).assert_one_line_error(&[
        "invalid AMQP URL",
        "amqp://guest:**@",
        "expected amqp://",
    ]);
}

#[test]
fn wrong_password_names_the_user_and_vhost() {
    let output = with_url("amqp://guest:wrong-password@127.0.0.1:5672/%2f", &[]);
    output.assert_one_line_error(&["ACCESS_REFUSED", "user 'guest'", "vhost '/'"]);
    assert!(!output.stderr.contains("wrong-password"), "password leaked");
}

#[test]
fn unreachable_broker_says_how_to_start_one() {
    with_url("amqp://guest:guest@127.0.0.1:1/%2f", &[]).assert_one_line_error(&[
        "not reachable",
        "127.0.0.1:1",
        "rabbitmq-server -detached",
    ]);
}

#[tokio::test]
async fn durable_flag_against_a_non_durable_queue() {
    let queue = unique_name("mismatch");
    // The blog's declaration: non-durable.
    let connection = shared::testing::test_connection().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "bye".into()).await;

    let (url, name) = (amqp_url(), queue.clone());
    let output =
        tokio::task::spawn_blocking(move || with_url(&url, &["--queue", &name, "--durable"]))
            .await
            .unwrap();
    output.assert_one_line_error(&["PRECONDITION_FAILED", "durable", "drop --durable", &queue]);
    delete_queue(&queue).await;
}

#[test]
fn zero_prefetch_is_refused_by_the_parser() {
    let output = run_cli(CONSUMER, &["--prefetch", "0"], LIMIT);
    assert_eq!(output.code, Some(2));
    assert!(output.stderr.contains("--prefetch"), "{}", output.stderr);
}

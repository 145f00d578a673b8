//! The library against the real management API and the real broker: the
//! blog's session creates a user that can then publish and consume through
//! the `producer` and `consumer` crates, and the safety rules hold (no
//! overwritten passwords, no permissions means no vhost).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{LIMIT, UserGuard, admin, amqp_url_as};
use consumer::{AckMode, ConsumerConfig};
use producer::{Messages, ProducerConfig};
use rabbitmq_users::{Admin, Command, Password, Permissions, UsersError};
use shared::{
    AmqpError, AmqpSettings, QueueSpec, connect_amqp,
    testing::{delete_queue, unique_name},
};
use tokio::time::timeout;

/// Runs one command with the password given, returning what it printed.
async fn run(admin: &Admin, command: Command) -> Result<String, UsersError> {
    let mut out = Vec::new();
    let result = timeout(
        LIMIT,
        rabbitmq_users::run(admin, command, &mut out, |user| {
            panic!("asked for {user}'s password although it was given")
        }),
    )
    .await
    .expect("the management API did not answer in time");
    result.map(|()| String::from_utf8(out).unwrap())
}

fn amqp_settings(user: &str, password: &str) -> AmqpSettings {
    let mut settings = AmqpSettings::new(amqp_url_as(user, password));
    settings.connect_timeout = std::time::Duration::from_secs(10);
    settings
}

/// What RabbitMQ says when `user` logs in over AMQP with `password`.
async fn amqp_login(user: &str, password: &str) -> Result<(), AmqpError> {
    let settings = amqp_settings(user, password);
    let connection = timeout(LIMIT, connect_amqp(&settings, "rabbitmq-users-test"))
        .await
        .expect("connecting timed out")?;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

#[tokio::test]
async fn blog_session_makes_a_user_that_can_round_trip_a_message() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-admin");
    let name = user.name.clone();
    let password = "round-trip-password";

    // The blog's commands, in the blog's order.
    let mut printed = String::new();
    for command in [
        Command::AddUser {
            name: name.clone(),
            password: Some(Password::from(password)),
        },
        Command::SetUserTags {
            name: name.clone(),
            tags: vec!["administrator".to_owned()],
        },
        Command::SetPermissions {
            vhost: "/".to_owned(),
            user: name.clone(),
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
        },
        Command::ListUsers,
        Command::ListPermissions {
            vhost: "/".to_owned(),
        },
    ] {
        printed += &run(&admin, command).await.expect("command failed");
    }
    let expected_start = format!(
        "Creating user \"{name}\"\n\
         Setting tags for user \"{name}\" to [administrator]\n\
         Setting permissions for user \"{name}\" in vhost \"/\"\n\
         Listing users\n"
    );
    assert!(printed.starts_with(&expected_start), "{printed}");
    assert!(
        printed.contains(&format!("\n{name}\t[administrator]\n")),
        "{printed}"
    );
    assert!(
        printed.contains("\nListing permissions for vhost \"/\"\n"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("\n{name}\t.*\t.*\t.*\n")),
        "{printed}"
    );

    // Log in as the new user: publish through `producer`, read through `consumer`.
    let queue = QueueSpec::new(unique_name("rmq-users-queue"));
    let body = format!("Hello RabbitMQ from {name}!");
    let report = timeout(
        LIMIT,
        producer::run(
            ProducerConfig {
                amqp: amqp_settings(&name, password),
                queue: queue.clone(),
                messages: Messages::Single(body.clone()),
            },
            std::future::pending(),
        ),
    )
    .await
    .expect("publishing timed out")
    .expect("the new user could not publish");
    assert_eq!(report.published, 1);

    let mut received = Vec::new();
    let report = timeout(
        LIMIT,
        consumer::run(
            ConsumerConfig {
                amqp: amqp_settings(&name, password),
                queue: queue.clone(),
                ack_mode: AckMode::AfterPrint,
                prefetch: 1,
                limit: Some(1),
            },
            &mut received,
            std::future::pending(),
        ),
    )
    .await
    .expect("consuming timed out")
    .expect("the new user could not consume");
    assert_eq!(report.received, 1);
    assert_eq!(String::from_utf8(received).unwrap(), format!("{body}\n"));
    delete_queue(&queue.name).await;

    // The blog's last command: afterwards the user can no longer log in.
    let printed = run(&admin, Command::DeleteUser { name: name.clone() })
        .await
        .expect("delete-user failed");
    assert_eq!(printed, format!("Deleting user \"{name}\"\n"));
    let refused = amqp_login(&name, password).await.unwrap_err();
    assert!(
        matches!(refused, AmqpError::AccessRefused { .. }),
        "{refused}"
    );
    let listed = run(&admin, Command::ListUsers).await.unwrap();
    assert!(!listed.contains(&format!("\n{name}\t")), "{listed}");
}

#[tokio::test]
async fn a_user_without_permissions_is_refused_the_vhost() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-noperm");
    let password = "no-permissions-password";
    admin
        .add_user(&user.name, &Password::from(password))
        .await
        .unwrap();

    // The login itself succeeds; it is the vhost that is refused (530).
    let refused = amqp_login(&user.name, password).await.unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, AmqpError::VhostNotAllowed { .. }),
        "{message}"
    );
    assert!(message.contains("NOT_ALLOWED"), "{message}");
    assert!(message.contains("access to vhost '/' refused"), "{message}");
    assert!(message.contains("set_permissions -p /"), "{message}");

    // Granting the blog's permissions is what lets it in.
    admin
        .set_permissions("/", &user.name, &Permissions::all())
        .await
        .unwrap();
    amqp_login(&user.name, password)
        .await
        .expect("with permissions the user gets in");
}

#[tokio::test]
async fn add_user_refuses_an_existing_user_and_keeps_its_password() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-exists");
    admin
        .add_user(&user.name, &Password::from("first-password"))
        .await
        .unwrap();

    let error = admin
        .add_user(&user.name, &Password::from("second-password"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, UsersError::UserExists { user: u } if *u == user.name),
        "{error}"
    );

    // The first password still logs in (and is only refused the vhost, as the
    // user has no permissions); the second one is not a valid login.
    let first = amqp_login(&user.name, "first-password").await.unwrap_err();
    assert!(
        matches!(first, AmqpError::VhostNotAllowed { .. }),
        "{first}"
    );
    let second = amqp_login(&user.name, "second-password").await.unwrap_err();
    assert!(
        matches!(second, AmqpError::AccessRefused { .. }),
        "{second}"
    );
}

async fn tags_of(admin: &Admin, name: &str) -> Vec<String> {
    admin
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|listed| listed.name == name)
        .map(|listed| listed.tags)
        .expect("the user is listed")
}

#[tokio::test]
async fn set_user_tags_replaces_the_tags_and_keeps_the_password() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-tags");
    admin
        .add_user(&user.name, &Password::from("tags-password"))
        .await
        .unwrap();

    let tags = vec!["management".to_owned(), "monitoring".to_owned()];
    admin.set_user_tags(&user.name, &tags).await.unwrap();
    assert_eq!(tags_of(&admin, &user.name).await, tags);
    admin.set_user_tags(&user.name, &[]).await.unwrap();
    assert!(tags_of(&admin, &user.name).await.is_empty());

    // PUT /api/users without a password would have cleared it.
    let login = amqp_login(&user.name, "tags-password").await.unwrap_err();
    assert!(
        matches!(login, AmqpError::VhostNotAllowed { .. }),
        "{login}"
    );
}

#[tokio::test]
async fn add_user_asks_for_a_password_only_when_it_can_be_used() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-prompt");
    let mut asked = Vec::new();
    let mut out = Vec::new();
    rabbitmq_users::run(
        &admin,
        Command::AddUser {
            name: user.name.clone(),
            password: None,
        },
        &mut out,
        |name| {
            asked.push(name.to_owned());
            Ok(Password::from("prompted-password"))
        },
    )
    .await
    .unwrap();
    assert_eq!(asked, std::slice::from_ref(&user.name));

    // For a user that exists, the refusal comes before any prompt.
    let error = rabbitmq_users::run(
        &admin,
        Command::AddUser {
            name: user.name.clone(),
            password: None,
        },
        &mut out,
        |_| panic!("prompted for a user that cannot be created"),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, UsersError::UserExists { .. }), "{error}");
    let login = amqp_login(&user.name, "prompted-password")
        .await
        .unwrap_err();
    assert!(
        matches!(login, AmqpError::VhostNotAllowed { .. }),
        "{login}"
    );
}

#[tokio::test]
async fn an_empty_password_creates_nothing() {
    let admin = admin();
    let user = UserGuard::new("rmq-users-empty");
    let error = run(
        &admin,
        Command::AddUser {
            name: user.name.clone(),
            password: Some(Password::from("")),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, UsersError::EmptyPassword), "{error}");
    assert!(admin.find_user(&user.name).await.unwrap().is_none());
}

#[tokio::test]
async fn every_wait_is_bounded_even_against_a_server_that_never_answers() {
    // The kernel completes the TCP handshake for a listening socket nobody
    // accepts from, so the request is sent and then nothing ever comes back:
    // only the client's own --api-timeout can end it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = common::api_settings();
    settings.api_url = format!("http://{}", silent.local_addr().unwrap());
    settings.api_timeout = std::time::Duration::from_secs(1);
    let admin = Admin::new(&settings).unwrap();
    let started = std::time::Instant::now();
    let error = timeout(LIMIT, admin.list_users())
        .await
        .expect("the client's own timeout should have fired")
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, UsersError::Unreachable { .. }), "{message}");
    assert!(message.contains("no answer in time"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

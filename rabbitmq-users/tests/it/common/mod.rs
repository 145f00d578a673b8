//! What the integration tests share: the admin login, test users that delete
//! themselves, and the AMQP URL a test user connects with.
//!
//! Every user a test creates is named by `unique_name` and owned by a
//! [`UserGuard`], which deletes it when the test ends — passed, failed or
//! panicked — so the suite can run in parallel and twice in a row without
//! leaving users behind.

#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use clap::Parser;
use rabbitmq_users::{Admin, ApiSettings, UsersError};

/// Bound on every management API call and every binary run in the tests.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rabbitmq-users");

#[derive(Parser)]
struct FromEnv {
    #[command(flatten)]
    api: ApiSettings,
}

/// The management API the binary would use: RABBITMQ_API_URL,
/// RABBITMQ_ADMIN_USER and RABBITMQ_ADMIN_PASSWORD, or the blog's defaults.
pub fn api_settings() -> ApiSettings {
    FromEnv::parse_from(["tests"]).api
}

pub fn admin() -> Admin {
    Admin::new(&api_settings()).expect("the test admin settings are valid")
}

/// A test user's name; deletes the user (if it exists) when dropped.
#[derive(Debug)]
pub struct UserGuard {
    pub name: String,
}

impl UserGuard {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: shared::testing::unique_name(prefix),
        }
    }
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and may run inside a test's runtime (where
        // blocking on another one panics): delete from a thread of our own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async {
                match tokio::time::timeout(LIMIT, admin().delete_user(&name)).await {
                    Ok(Ok(()) | Err(UsersError::NoSuchUser { .. })) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("could not delete test user {}: {error}", self.name);
        }
    }
}

/// `amqp://USER:PASSWORD@<the test broker>/%2f`: the broker the other crates'
/// tests use (AMQP_URL or the blog's default), logged in as `user`.
pub fn amqp_url_as(user: &str, password: &str) -> String {
    let broker = shared::testing::amqp_url();
    let uri = shared::amqp::parse_amqp_url(&broker).expect("AMQP_URL is valid");
    format!(
        "amqp://{user}:{password}@{}:{}/%2f",
        uri.authority.host, uri.authority.port
    )
}

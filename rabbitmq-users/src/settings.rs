//! Where the management API is and whom we log in to it as, as a `clap`
//! argument group.
//!
//! `sudo rabbitmqctl` in the blog needs no credentials: it talks to the node
//! over Erlang distribution as root, on the broker's own host. The HTTP API
//! works from anywhere but needs a login, so the defaults are the blog's
//! other defaults — the management plugin on `127.0.0.1:15672`, user
//! `guest`/`guest` ("rabbitMQ的默认用户名和密码都为 'guest'").

use std::time::Duration;

use clap::Args;
use shared::Seconds;

use crate::password::Password;

/// The management plugin's default listener.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:15672";

/// `--api-timeout`: a request that may not take any time cannot succeed,
/// and an hour is longer than any management call needs.
const API_TIMEOUT: Seconds = Seconds::between(0.001, 3600.0);

/// How to reach and log in to the management HTTP API.
#[derive(Args, Clone, Debug)]
pub struct ApiSettings {
    /// Management plugin URL; the HTTP API is under URL/api.
    #[arg(long, env = "RABBITMQ_API_URL", default_value = DEFAULT_API_URL)]
    pub api_url: String,

    /// User to log in to the management API as (needs the administrator tag).
    #[arg(long, env = "RABBITMQ_ADMIN_USER", default_value = "guest")]
    pub admin_user: String,

    /// Password of --admin-user (by default, RabbitMQ's built-in guest password).
    // The default is not printed by clap: `--help` shows no password.
    #[arg(
        long,
        env = "RABBITMQ_ADMIN_PASSWORD",
        default_value = "guest",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub admin_password: Password,

    /// Seconds to wait for each answer from the management API.
    #[arg(long, env = "RABBITMQ_API_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = API_TIMEOUT)]
    pub api_timeout: Duration,
}

impl ApiSettings {
    /// The blog's setup: `guest`/`guest` on the local management plugin.
    pub fn new(api_url: impl Into<String>) -> Self {
        Self {
            api_url: api_url.into(),
            admin_user: "guest".to_owned(),
            admin_password: Password::from("guest"),
            api_timeout: Duration::from_secs(30),
        }
    }
}

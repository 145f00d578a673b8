//! Everything that can go wrong while managing users, phrased for the person
//! at the terminal: what was wrong, then what to do about it.
//!
//! rabbitmqctl answers a mistake with `Error: ...` and a non-zero exit; so do
//! we (through `shared::cli::exit_code`). Each message is a single line, and
//! none of them contains a password: URLs go through `shared::Redacted`, and
//! the new user's password is never part of an error at all.

use thiserror::Error;

use crate::settings::DEFAULT_API_URL;

/// One variant per cause a user can act on; [`UsersError::Api`] for the rest.
#[derive(Debug, Error)]
pub enum UsersError {
    #[error(
        "user \"{user}\" already exists; add-user does not overwrite an existing user's password (delete it first: rabbitmq-users delete-user {user})"
    )]
    UserExists { user: String },

    #[error(
        "user \"{user}\" does not exist; create it first: rabbitmq-users add-user {user} (rabbitmq-users list-users shows who exists)"
    )]
    NoSuchUser { user: String },

    #[error(
        "vhost \"{vhost}\" does not exist; create it first (rabbitmqctl add_vhost {vhost}) or pick another with -p"
    )]
    NoSuchVhost { vhost: String },

    #[error(
        "the management API at {url} refused the login of admin user '{user}' (401: {reason}); check --admin-user / --admin-password (RABBITMQ_ADMIN_USER / RABBITMQ_ADMIN_PASSWORD)"
    )]
    BadAdminCredentials {
        url: String,
        user: String,
        reason: String,
    },

    #[error(
        "admin user '{user}' is not an administrator ({status}: {reason}); managing users needs the administrator tag: rabbitmqctl set_user_tags {user} administrator, or log in as an administrator with --admin-user"
    )]
    NotAdministrator {
        user: String,
        status: u16,
        reason: String,
    },

    #[error(
        "the RabbitMQ management API is not reachable at {url} ({cause}); is the management plugin enabled? Enable it with `rabbitmq-plugins enable rabbitmq_management` (it listens on port 15672), or point --api-url / RABBITMQ_API_URL at it"
    )]
    Unreachable { url: String, cause: String },

    #[error(
        "invalid {permission} regex \"{pattern}\": {reason} ({judged_by}); permissions are regular expressions matched against resource names, e.g. \".*\" for all or \"\" for none"
    )]
    InvalidRegex {
        /// `configure`, `write` or `read`.
        permission: &'static str,
        pattern: String,
        reason: String,
        /// Whether we caught it before sending, or RabbitMQ refused it.
        judged_by: &'static str,
    },

    #[error("invalid management API URL '{url}': {reason}; expected e.g. {DEFAULT_API_URL}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "no password given for user \"{user}\" and no terminal to ask on; pass it as the argument after the name, or set RABBITMQ_NEW_USER_PASSWORD"
    )]
    NoPassword { user: String },

    #[error(
        "the password is empty; RabbitMQ refuses logins with an empty password, so the user could never connect"
    )]
    EmptyPassword,

    #[error("the two passwords typed do not match; nothing was changed")]
    PasswordMismatch,

    #[error("could not read the password from the terminal: {0}")]
    Prompt(std::io::Error),

    #[error("could not set up the HTTP client: {0}")]
    Client(String),

    #[error("the management API at {url} failed while {action}: {detail}")]
    Api {
        url: String,
        action: &'static str,
        detail: String,
    },

    #[error("could not write the output: {0}")]
    Output(std::io::Error),
}

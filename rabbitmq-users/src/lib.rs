//! The blog's "RabbitMQ 用户操作" section — `rabbitmqctl add_user`,
//! `set_user_tags`, `set_permissions`, `list_users`, `delete_user` — over
//! RabbitMQ's management HTTP API, with the same arguments and the same
//! terminal lines:
//!
//! ```text
//! $ sudo rabbitmqctl add_user admin liao         $ rabbitmq-users add-user admin
//! Creating user "admin"                          Creating user "admin"
//! ```
//!
//! `rabbitmqctl` has to run on the broker's host, as root (the blog's
//! `sudo`). The HTTP API works from any machine that can reach port 15672,
//! with an administrator's login instead of root — which is also how the
//! blog's Python side (Celery, pika) would manage users from code.
//!
//! What the Rust version adds: `add-user` will not silently overwrite an
//! existing user's password; the password is prompted without echo instead of
//! sitting in the shell history, and only its salted hash is sent; permission
//! regexes are checked before they are sent; and every failure is one line
//! that says what to do.
//!
//! # Layout
//!
//! | module          | concept                                                      |
//! |-----------------|--------------------------------------------------------------|
//! | [`settings`]    | `--api-url`, `--admin-user`, `--admin-password` (and env)    |
//! | [`admin`]       | one management API call per rabbitmqctl command; HTTP errors |
//! | [`permissions`] | the configure/write/read regexes, checked locally and by PCRE |
//! | [`password`]    | the new user's password: argument, env, or prompt; redacted  |
//! | [`error`]       | [`UsersError`]: one clear line per thing that can go wrong   |
//!
//! [`run`] executes one [`Command`] and writes rabbitmqctl's lines; the binary
//! (`src/main.rs`) only parses arguments around it.

pub mod admin;
pub mod error;
pub mod password;
pub mod permissions;
pub mod settings;

use std::io::Write;

use clap::Subcommand;

pub use admin::{Admin, UserPermissions, UserSummary};
pub use error::UsersError;
pub use password::Password;
pub use permissions::Permissions;
pub use settings::ApiSettings;

/// The rabbitmqctl commands, with rabbitmqctl's argument order. The
/// underscore names (`add_user`) work too, so the blog's lines can be pasted.
#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Create a user with no tags and no permissions (rabbitmqctl add_user).
    #[command(alias = "add_user")]
    AddUser {
        /// The new user's name.
        name: String,
        /// Its password. Better left out: it is then read from
        /// RABBITMQ_NEW_USER_PASSWORD, or prompted for without echo.
        #[arg(env = password::NEW_USER_PASSWORD_ENV, hide_env_values = true)]
        password: Option<Password>,
    },

    /// Replace a user's tags, e.g. administrator (rabbitmqctl set_user_tags).
    #[command(alias = "set_user_tags")]
    SetUserTags {
        name: String,
        /// administrator, monitoring, policymaker, management, or your own; none clears them.
        tags: Vec<String>,
    },

    /// Grant a user configure/write/read regexes in a vhost (rabbitmqctl set_permissions).
    #[command(alias = "set_permissions")]
    SetPermissions {
        /// The virtual host.
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        /// Regex of the resources the user may declare and delete (".*" for all).
        #[arg(allow_hyphen_values = true)]
        configure: String,
        /// Regex of the resources the user may publish to.
        #[arg(allow_hyphen_values = true)]
        write: String,
        /// Regex of the resources the user may consume from.
        #[arg(allow_hyphen_values = true)]
        read: String,
    },

    /// List users and their tags (rabbitmqctl list_users).
    #[command(alias = "list_users")]
    ListUsers,

    /// Delete a user, its permissions and its connections (rabbitmqctl delete_user).
    #[command(alias = "delete_user")]
    DeleteUser { name: String },

    /// List who may do what in a vhost (rabbitmqctl list_permissions).
    #[command(alias = "list_permissions")]
    ListPermissions {
        /// The virtual host.
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
}

/// Runs `command` against the API, writing rabbitmqctl's lines to `out`.
///
/// Like rabbitmqctl, the line saying what is about to happen comes first, so
/// on failure it is followed by the error. `ask_password` is called only when
/// `add-user` got no password and the user does not exist yet — nobody types
/// a password for a user that cannot be created.
pub async fn run(
    admin: &Admin,
    command: Command,
    out: &mut impl Write,
    ask_password: impl FnOnce(&str) -> Result<Password, UsersError>,
) -> Result<(), UsersError> {
    match command {
        Command::AddUser { name, password } => {
            say(out, format_args!("Creating user \"{name}\""))?;
            if admin.find_user(&name).await?.is_some() {
                return Err(UsersError::UserExists { user: name });
            }
            // A one-shot CLI: nothing else runs while someone types.
            let password = match password {
                Some(password) => password,
                None => ask_password(&name)?,
            };
            admin.add_user(&name, &password).await
        }
        Command::SetUserTags { name, tags } => {
            say(
                out,
                format_args!("Setting tags for user \"{name}\" to [{}]", tags.join(", ")),
            )?;
            admin.set_user_tags(&name, &tags).await
        }
        Command::SetPermissions {
            vhost,
            user,
            configure,
            write,
            read,
        } => {
            say(
                out,
                format_args!("Setting permissions for user \"{user}\" in vhost \"{vhost}\""),
            )?;
            let permissions = Permissions {
                configure,
                write,
                read,
            };
            admin.set_permissions(&vhost, &user, &permissions).await
        }
        Command::ListUsers => {
            let users = admin.list_users().await?;
            say(out, format_args!("Listing users"))?;
            for user in users {
                say(
                    out,
                    format_args!("{}\t[{}]", user.name, user.tags.join(", ")),
                )?;
            }
            Ok(())
        }
        Command::DeleteUser { name } => {
            say(out, format_args!("Deleting user \"{name}\""))?;
            admin.delete_user(&name).await
        }
        Command::ListPermissions { vhost } => {
            let rows = admin.list_permissions(&vhost).await?;
            say(
                out,
                format_args!("Listing permissions for vhost \"{vhost}\""),
            )?;
            for row in rows {
                let Permissions {
                    configure,
                    write,
                    read,
                } = &row.permissions;
                say(
                    out,
                    format_args!("{}\t{configure}\t{write}\t{read}", row.user),
                )?;
            }
            Ok(())
        }
    }
}

/// One line of output, flushed at once so it is on screen before a prompt
/// or an error line.
fn say(out: &mut impl Write, line: std::fmt::Arguments<'_>) -> Result<(), UsersError> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(UsersError::Output)
}

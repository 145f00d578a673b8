//! The new user's password: where it comes from, and how it is kept out of
//! every log line, error message and `Debug` dump.
//!
//! The blog types it on the command line (`rabbitmqctl add_user admin liao`),
//! where it lands in the shell history and in `ps` for everyone on the host.
//! That still works here, but the two better sources are tried first when it
//! is left out: `RABBITMQ_NEW_USER_PASSWORD` (scripts, CI), then a prompt on
//! the terminal with echo off (people).
//!
//! [`Password`] has no `Display` on purpose: the only way to read it is
//! [`Password::expose`], which is called in exactly one place — where the
//! password is hashed before it is sent.

use std::{fmt, io::IsTerminal};

use crate::error::UsersError;

/// Environment variable read when `add-user` gets no password argument.
pub const NEW_USER_PASSWORD_ENV: &str = "RABBITMQ_NEW_USER_PASSWORD";

/// A password that prints as `**`, whatever struct it ends up in.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The secret itself. Hash it or send it; never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(**)")
    }
}

// `From<String>` is what lets clap parse it straight from an argument or an
// environment variable, so the secret is wrapped before anything can log it.
impl From<String> for Password {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Password {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// Refuses a password RabbitMQ could never accept at login.
///
/// The internal auth backend rejects an empty password outright, so a user
/// created with one exists but can never connect: better to say so now.
pub fn check_usable(password: &Password) -> Result<(), UsersError> {
    if password.expose().is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    Ok(())
}

/// Asks for `user`'s password twice on the terminal, without echo.
///
/// With no terminal (a pipe, cron, CI) there is nobody to ask: fail with the
/// ways to pass it instead of blocking on a read that never ends.
pub fn ask_on_terminal(user: &str) -> Result<Password, UsersError> {
    if !std::io::stdin().is_terminal() {
        return Err(UsersError::NoPassword {
            user: user.to_owned(),
        });
    }
    // rpassword prompts on /dev/tty and turns echo off while we read.
    // Typing it twice catches a typo that would otherwise lock the user out.
    let first = rpassword::prompt_password(format!("Password for user \"{user}\": "))
        .map_err(UsersError::Prompt)?;
    let second = rpassword::prompt_password("Repeat the password: ").map_err(UsersError::Prompt)?;
    if first != second {
        return Err(UsersError::PasswordMismatch);
    }
    Ok(Password(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let password = Password::from("s3cret-value");
        let shown = format!("{password:?} {:?}", Some(password.clone()));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(password.expose(), "s3cret-value");
    }

    #[test]
    fn an_empty_password_is_refused() {
        assert!(matches!(
            check_usable(&Password::from("")),
            Err(UsersError::EmptyPassword)
        ));
        assert!(check_usable(&Password::from("x")).is_ok());
    }
}

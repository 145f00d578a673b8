//! The management HTTP API calls behind each rabbitmqctl command, and the
//! translation of HTTP answers into [`UsersError`]s.
//!
//! | rabbitmqctl        | HTTP API (through `rabbitmq_http_client`)                |
//! |--------------------|----------------------------------------------------------|
//! | `add_user`         | `GET /api/users/{name}` (must be 404), then `PUT` it     |
//! | `set_user_tags`    | `GET /api/users/{name}`, `PUT` it back with the new tags |
//! | `set_permissions`  | `PUT /api/permissions/{vhost}/{user}`                    |
//! | `list_users`       | `GET /api/users`                                         |
//! | `delete_user`      | `DELETE /api/users/{name}`                               |
//! | `list_permissions` | `GET /api/vhosts/{vhost}/permissions`                    |
//!
//! Two things the HTTP API does differently from rabbitmqctl shape this file:
//!
//! * `PUT /api/users/{name}` is create-*or-replace*. Sent for a user that
//!   exists, it silently replaces the password; sent without a password, it
//!   *clears* it. Hence the existence check in [`Admin::add_user`], and why
//!   [`Admin::set_user_tags`] sends the user's current password hash back.
//! * The password never travels: we salt and hash it here (SHA-256, RabbitMQ's
//!   default scheme) and send only the hash.

use std::{fmt, time::Duration};

use rabbitmq_http_client::{
    api::{Client, ClientBuilder, HttpClientError},
    password_hashing,
    requests::{self, UserParams},
    responses,
};
use reqwest::StatusCode;
use serde_json::Value;
use shared::Redacted;
use tracing::debug;

use crate::{
    error::UsersError,
    password::{Password, check_usable},
    permissions::{Permissions, server_regex_error},
    settings::ApiSettings,
};

/// Time allowed for the TCP connect alone: a closed port answers at once, a
/// firewalled one never does, and either way the cause is the same.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A user as `list_users` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub tags: Vec<String>,
}

/// A row of `list_permissions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPermissions {
    pub user: String,
    pub permissions: Permissions,
}

/// A logged-in view of the management API (no request is made until a
/// method is called).
pub struct Admin {
    client: Client<String, String, String>,
    /// The API base, safe to print.
    url: String,
    user: String,
}

// By hand: the client inside holds the admin password.
impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Builds the client for `settings`. Checks the URL; does not connect.
    pub fn new(settings: &ApiSettings) -> Result<Self, UsersError> {
        let endpoint = api_endpoint(&settings.api_url)?;
        let url = Redacted(&endpoint).to_string();
        let timeout = settings.api_timeout;
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            // A redirect would resend our admin credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| UsersError::Client(error.to_string()))?;
        let client = ClientBuilder::new()
            .with_endpoint(endpoint)
            .with_basic_auth_credentials(
                settings.admin_user.clone(),
                settings.admin_password.expose().to_owned(),
            )
            .with_client(http)
            .build()
            .map_err(|error| UsersError::InvalidUrl {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        debug!(%url, user = %settings.admin_user, "using the management API");
        Ok(Self {
            client,
            url,
            user: settings.admin_user.clone(),
        })
    }

    /// The API base URL, password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The user, or `None` if there is no such user.
    pub async fn find_user(&self, name: &str) -> Result<Option<responses::User>, UsersError> {
        match self.client.get_user(name).await {
            Ok(user) => Ok(Some(user)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(self.classify("looking up the user", error)),
        }
    }

    /// `rabbitmqctl add_user NAME PASSWORD`, refusing to replace an existing user.
    ///
    /// There is still a window between the check and the `PUT` in which
    /// someone else could create the same user; the HTTP API offers no
    /// create-only call to close it.
    pub async fn add_user(&self, name: &str, password: &Password) -> Result<(), UsersError> {
        check_usable(password)?;
        if self.find_user(name).await?.is_some() {
            return Err(UsersError::UserExists {
                user: name.to_owned(),
            });
        }
        let salt = password_hashing::salt();
        let hash =
            password_hashing::base64_encoded_salted_password_hash_sha256(&salt, password.expose());
        let params = UserParams::without_tags(name, &hash);
        self.client
            .create_user(&params)
            .await
            .map_err(|error| self.classify("creating the user", error))
    }

    /// `rabbitmqctl set_user_tags NAME TAG...` (no tags clears them).
    ///
    /// The API has no call for tags alone: we read the user and write it back
    /// with its current password hash, which keeps the password. A password
    /// change that lands between the two requests would be undone.
    pub async fn set_user_tags(&self, name: &str, tags: &[String]) -> Result<(), UsersError> {
        let Some(user) = self.find_user(name).await? else {
            return Err(UsersError::NoSuchUser {
                user: name.to_owned(),
            });
        };
        let tags = tags.join(",");
        let params = UserParams::new(name, &user.password_hash, &tags);
        self.client
            .create_user(&params)
            .await
            .map_err(|error| self.classify("setting the tags", error))
    }

    /// `rabbitmqctl set_permissions -p VHOST USER CONF WRITE READ`.
    pub async fn set_permissions(
        &self,
        vhost: &str,
        user: &str,
        permissions: &Permissions,
    ) -> Result<(), UsersError> {
        permissions.check()?;
        let params = requests::Permissions {
            user,
            vhost,
            configure: &permissions.configure,
            write: &permissions.write,
            read: &permissions.read,
        };
        let error = match self.client.declare_permissions(&params).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let body = error_body(&error);
        if let Some((pattern, reason)) = body.as_ref().and_then(server_regex_error) {
            let permission = permissions
                .named()
                .into_iter()
                .find(|(_, candidate)| *candidate == pattern)
                .map_or("permission", |(name, _)| name);
            return Err(UsersError::InvalidRegex {
                permission,
                pattern,
                reason,
                judged_by: "refused by RabbitMQ",
            });
        }
        // RabbitMQ answers 400 `vhost_or_user_not_found` without saying which;
        // one more request tells the user which of the two to fix.
        let not_found =
            error.is_not_found() || reason_of(body.as_ref()) == "vhost_or_user_not_found";
        if not_found {
            if self.find_user(user).await?.is_none() {
                return Err(UsersError::NoSuchUser {
                    user: user.to_owned(),
                });
            }
            self.list_permissions(vhost).await?;
        }
        Err(self.classify("setting the permissions", error))
    }

    /// `rabbitmqctl list_users`.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, UsersError> {
        let users = self
            .client
            .list_users()
            .await
            .map_err(|error| self.classify("listing the users", error))?;
        Ok(users
            .into_iter()
            .map(|user| UserSummary {
                name: user.name,
                tags: user.tags.0,
            })
            .collect())
    }

    /// `rabbitmqctl delete_user NAME`. RabbitMQ also closes the user's
    /// connections and drops its permissions.
    pub async fn delete_user(&self, name: &str) -> Result<(), UsersError> {
        match self.client.delete_user(name, false).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_not_found() => Err(UsersError::NoSuchUser {
                user: name.to_owned(),
            }),
            Err(error) => Err(self.classify("deleting the user", error)),
        }
    }

    /// `rabbitmqctl list_permissions -p VHOST`.
    pub async fn list_permissions(&self, vhost: &str) -> Result<Vec<UserPermissions>, UsersError> {
        match self.client.list_permissions_in(vhost).await {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|row| UserPermissions {
                    user: row.user,
                    permissions: Permissions {
                        configure: row.configure,
                        write: row.write,
                        read: row.read,
                    },
                })
                .collect()),
            Err(error) if error.is_not_found() => Err(UsersError::NoSuchVhost {
                vhost: vhost.to_owned(),
            }),
            Err(error) => Err(self.classify("listing the permissions", error)),
        }
    }

    /// The causes every call shares: login, authorisation, reachability.
    fn classify(&self, action: &'static str, error: HttpClientError) -> UsersError {
        let url = self.url.clone();
        let body = error_body(&error);
        let reason = reason_of(body.as_ref());
        match &error {
            HttpClientError::ClientErrorResponse { status_code, .. }
                if matches!(
                    *status_code,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) =>
            {
                // 401 means both "wrong password" (reason "Login failed") and
                // "logged in, but not allowed" ("Not administrator user",
                // "Not management user"); only the reason tells them apart.
                if *status_code == StatusCode::FORBIDDEN || reason.starts_with("Not ") {
                    UsersError::NotAdministrator {
                        user: self.user.clone(),
                        status: status_code.as_u16(),
                        reason,
                    }
                } else {
                    UsersError::BadAdminCredentials {
                        url,
                        user: self.user.clone(),
                        reason,
                    }
                }
            }
            HttpClientError::RequestError { error, .. } if !error.is_decode() => {
                UsersError::Unreachable {
                    url,
                    cause: if error.is_timeout() {
                        "no answer in time".to_owned()
                    } else {
                        innermost_cause(error)
                    },
                }
            }
            HttpClientError::NotFound => UsersError::Api {
                url,
                action,
                detail: "404 Not Found (is this the management plugin's URL?)".to_owned(),
            },
            HttpClientError::ClientErrorResponse { status_code, .. }
            | HttpClientError::ServerErrorResponse { status_code, .. } => UsersError::Api {
                url,
                action,
                detail: format!("{status_code}: {reason}"),
            },
            other => UsersError::Api {
                url,
                action,
                detail: one_line(&other.to_string()),
            },
        }
    }
}

/// `<url>/api`, the base every API path hangs off. Accepts the URL with or
/// without the `/api` suffix.
pub fn api_endpoint(url: &str) -> Result<String, UsersError> {
    let invalid = |reason: &str| UsersError::InvalidUrl {
        url: Redacted(url).to_string(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the host is missing"));
    }
    let base = url.trim_end_matches('/');
    Ok(if base.ends_with("/api") {
        base.to_owned()
    } else {
        format!("{base}/api")
    })
}

/// reqwest refuses to build a client until a rustls crypto provider is
/// chosen (the workspace builds it with `rustls-no-provider`, to avoid
/// aws-lc). Pick ring, as lapin does, unless someone already chose.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An Err means another thread installed one in between: fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The JSON body of an error answer, if there was one.
fn error_body(error: &HttpClientError) -> Option<Value> {
    match error {
        HttpClientError::ClientErrorResponse { body, .. }
        | HttpClientError::ServerErrorResponse { body, .. } => {
            serde_json::from_str(body.as_deref()?).ok()
        }
        _ => None,
    }
}

/// The API's `reason` (or `error`) text, e.g. "Login failed".
fn reason_of(body: Option<&Value>) -> String {
    let text = |key: &str| body?.get(key)?.as_str().map(str::to_owned);
    one_line(&text("reason").or_else(|| text("error")).unwrap_or_default())
}

/// The root cause of a transport error ("Connection refused (os error 111)"),
/// not reqwest's outer "error sending request for url (...)".
fn innermost_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    one_line(&cause.to_string())
}

/// Error lines must stay one line, whatever the server sent.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_lives_under_slash_api() {
        for (given, expected) in [
            ("http://127.0.0.1:15672", "http://127.0.0.1:15672/api"),
            ("http://127.0.0.1:15672/", "http://127.0.0.1:15672/api"),
            ("http://127.0.0.1:15672/api", "http://127.0.0.1:15672/api"),
            (
                "https://rabbit.example/prefix/",
                "https://rabbit.example/prefix/api",
            ),
        ] {
            assert_eq!(api_endpoint(given).unwrap(), expected);
        }
    }

    #[test]
    fn other_schemes_and_garbage_are_refused_without_showing_a_password() {
        for url in [
            "amqp://guest:secret@127.0.0.1:5672",
            "127.0.0.1:15672",
            "http://",
        ] {
            let message = api_endpoint(url).unwrap_err().to_string();
            assert!(
                message.starts_with("invalid management API URL"),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn the_admin_password_is_not_in_debug() {
        let mut settings = ApiSettings::new("http://127.0.0.1:15672");
        settings.admin_password = Password::from("hunter2-admin");
        let admin = Admin::new(&settings).unwrap();
        let shown = format!("{admin:?} {settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn reasons_are_read_and_flattened() {
        let body: Value =
            serde_json::from_str(r#"{"error":"not_authorized","reason":"Login\nfailed"}"#).unwrap();
        assert_eq!(reason_of(Some(&body)), "Login failed");
        assert_eq!(reason_of(None), "");
    }
}

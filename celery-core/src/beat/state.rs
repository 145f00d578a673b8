//! Where beat remembers the last slot it sent for each entry.
//!
//! Celery keeps this in a Python `shelve` file next to the beat process
//! (`celerybeat-schedule`). We keep it, by default, in a **Redis hash**
//! (`beat:<schedule name>:state`, one field per entry, the slot as RFC 3339):
//!
//! * the lease is in Redis already, so this adds no new dependency;
//! * a standby that takes over reads the state its predecessor wrote — with a
//!   local file, the new leader on another host would not know what was sent;
//! * `HSET` of one field is atomic: no torn file after a crash.
//!
//! `--state FILE` keeps it in a local JSON file instead (written to a
//! temporary file and renamed over the old one, so a crash leaves either the
//! old or the new file, never half of one). Only sensible with a single beat
//! host.
//!
//! The slot is written *after* the broker confirmed the send: a crash in
//! between sends that slot again on restart (at least once), never loses it.

use std::{collections::BTreeMap, path::PathBuf};

use crate::redis_connection::ManagedConnection;
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::scheduler::State;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot {action} beat state in Redis key '{key}': {source}")]
    Redis {
        action: &'static str,
        key: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot {action} beat state file {path}: {source}")]
    File {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("beat state file {path} is not a JSON object of RFC 3339 times: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    /// True if Redis was away (as opposed to refusing or a bad file).
    pub fn is_connection_error(&self) -> bool {
        matches!(self, StateError::Redis { source, .. } if crate::redis_connection::is_connection_error(source))
    }
}

/// The state's home.
pub enum StateStore {
    Redis {
        connection: ManagedConnection,
        key: String,
        /// How long one read or write may take (Redis may be restarting).
        timeout: std::time::Duration,
    },
    File {
        path: PathBuf,
    },
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl StateStore {
    pub fn describe(&self) -> String {
        match self {
            StateStore::Redis { key, .. } => format!("Redis hash {key}"),
            StateStore::File { path } => format!("file {}", path.display()),
        }
    }

    /// Reads the whole state. Unreadable entries are dropped (with a
    /// warning): the entry then starts afresh rather than blocking beat.
    pub async fn load(&mut self) -> Result<State, StateError> {
        let raw: BTreeMap<String, String> = match self {
            StateStore::Redis {
                connection,
                key,
                timeout,
            } => {
                let mut read = redis::cmd("HGETALL");
                read.arg(&*key);
                bounded(*timeout, read.query_async(connection))
                    .await
                    .map_err(|source| StateError::Redis {
                        action: "read",
                        key: key.clone(),
                        source,
                    })?
            }
            StateStore::File { path } => match std::fs::read(&*path) {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(source) => {
                    return Err(StateError::File {
                        action: "read",
                        path: path.display().to_string(),
                        source,
                    });
                }
            },
        };
        Ok(raw
            .into_iter()
            .filter_map(|(name, text)| match DateTime::parse_from_rfc3339(&text) {
                Ok(time) => Some((name, time.with_timezone(&Utc))),
                Err(_) => {
                    tracing::warn!(entry = %name, value = %text, "beat: ignoring unreadable state");
                    None
                }
            })
            .collect())
    }

    /// Records `slot` as the last one dealt with for `entry`.
    pub async fn save(&mut self, entry: &str, slot: DateTime<Utc>) -> Result<(), StateError> {
        let text = slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match self {
            StateStore::Redis {
                connection,
                key,
                timeout,
            } => {
                let mut write = redis::cmd("HSET");
                write.arg(&*key).arg(entry).arg(text);
                bounded(*timeout, write.query_async::<()>(connection))
                    .await
                    .map_err(|source| StateError::Redis {
                        action: "write",
                        key: key.clone(),
                        source,
                    })
            }
            StateStore::File { .. } => {
                let mut state = self.load().await?;
                state.insert(entry.to_owned(), slot);
                let StateStore::File { path } = self else {
                    return Ok(());
                };
                write_file(path, &state)
            }
        }
    }
}

/// Runs one Redis call within `timeout`; running out of it is a timed-out
/// I/O error, which the caller treats as Redis being away.
pub async fn bounded<T>(
    timeout: std::time::Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))),
    }
}

/// Writes the whole state atomically: temporary file, fsync, rename.
fn write_file(path: &std::path::Path, state: &State) -> Result<(), StateError> {
    use std::io::Write;
    let error = |action, source| StateError::File {
        action,
        path: path.display().to_string(),
        source,
    };
    let text: BTreeMap<&str, String> = state
        .iter()
        .map(|(name, slot)| {
            (
                name.as_str(),
                slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        })
        .collect();
    let json = serde_json::to_vec_pretty(&text).map_err(|e| error("encode", e.into()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(|e| error("write", e))?;
    file.write_all(&json).map_err(|e| error("write", e))?;
    // Durable before it replaces the old file, or a power cut could leave
    // an empty file under the real name.
    file.sync_all().map_err(|e| error("write", e))?;
    std::fs::rename(&temporary, path).map_err(|e| error("replace", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn file_state_round_trips_and_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("beat-state-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let mut store = StateStore::File { path: path.clone() };
        assert!(store.load().await.unwrap().is_empty());
        let slot = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        store.save("report", slot).await.unwrap();
        store.save("cleanup", slot).await.unwrap();
        let mut reopened = StateStore::File { path };
        let state = reopened.load().await.unwrap();
        assert_eq!(state.get("report"), Some(&slot));
        assert_eq!(state.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

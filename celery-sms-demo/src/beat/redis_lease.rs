//! The Redis commands behind [`super::lease`]: acquire, renew, release.
//!
//! The key holds a value unique to this beat process, so renewing and
//! releasing can check "is it still mine?" atomically in a Lua script: a
//! beat whose lease expired must never extend or delete its successor's.

use redis::{Script, aio::ConnectionManager};

use super::lease::{Acquired, Renewed};

/// PEXPIRE only if the key still holds our value.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// DEL only if the key still holds our value.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// One beat's handle on the lease key.
pub struct RedisLease {
    connection: ConnectionManager,
    key: String,
    /// Who we are: host, pid and a random part, so two beats on one host
    /// (or a restarted one with a recycled pid) never look alike.
    holder: String,
    renew: Script,
    release: Script,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .finish()
    }
}

impl RedisLease {
    pub fn new(connection: ConnectionManager, key: String, holder: String) -> RedisLease {
        RedisLease {
            connection,
            key,
            holder,
            renew: Script::new(RENEW_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// `SET key holder NX PX ttl`; if taken, `PTTL` to know when to retry.
    pub async fn acquire(&mut self, ttl_ms: u64) -> Acquired {
        let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.connection)
            .await;
        match set {
            Ok(Some(_)) => Acquired::Won,
            Ok(None) => {
                let pttl: redis::RedisResult<i64> = redis::cmd("PTTL")
                    .arg(&self.key)
                    .query_async(&mut self.connection)
                    .await;
                Acquired::Held {
                    // -2: gone meanwhile (retry now); -1: no expiry (someone
                    // set it by hand; poll).
                    remaining: match pttl {
                        Ok(-2) => Some(std::time::Duration::ZERO),
                        Ok(ms) if ms >= 0 => Some(std::time::Duration::from_millis(ms as u64)),
                        _ => None,
                    },
                }
            }
            Err(error) => {
                tracing::warn!(key = %self.key, "beat: cannot reach Redis for the lease: {error}");
                Acquired::Failed
            }
        }
    }

    pub async fn renew(&mut self, ttl_ms: u64) -> Renewed {
        let renewed: redis::RedisResult<i64> = self
            .renew
            .key(&self.key)
            .arg(&self.holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.connection)
            .await;
        match renewed {
            Ok(1) => Renewed::Yes,
            Ok(_) => Renewed::Lost,
            Err(error) => {
                tracing::warn!(key = %self.key, "beat: cannot renew the lease: {error}");
                Renewed::Failed
            }
        }
    }

    /// Gives the lease up (on shutdown), if it is still ours.
    pub async fn release(&mut self) -> bool {
        let released: redis::RedisResult<i64> = self
            .release
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async(&mut self.connection)
            .await;
        matches!(released, Ok(1))
    }
}

/// Connects to the lease Redis, retrying while it starts, for at most `timeout`.
pub async fn connect(
    url: &str,
    timeout: std::time::Duration,
) -> Result<ConnectionManager, crate::broker::BrokerError> {
    use crate::broker::BrokerError;
    let shown = shared::Redacted(url).to_string();
    let client = redis::Client::open(url).map_err(|error| BrokerError::InvalidRedisUrl {
        url: shown.clone(),
        reason: error.to_string(),
    })?;
    match tokio::time::timeout(timeout, crate::broker::redis::connection_manager(&client)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(BrokerError::RedisUnreachable {
            url: shown,
            cause: error.to_string(),
        }),
        Err(_elapsed) => Err(BrokerError::RedisUnreachable {
            url: shown,
            cause: format!("no answer within {}s", timeout.as_secs_f64()),
        }),
    }
}

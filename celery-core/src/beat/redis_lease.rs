//! The Redis commands behind [`super::lease`]: acquire, renew, release.
//!
//! The key holds a value unique to this beat process, so renewing and
//! releasing can check "is it still mine?" atomically in a Lua script: a
//! beat whose lease expired must never extend or delete its successor's.

use redis::Script;

use super::lease::{Acquired, Renewed};
use crate::redis_connection::{RedisConnection, is_connection_error};

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
    redis: RedisConnection,
    /// How long one lease command may take: a quarter of the ttl, so a Redis
    /// that is away costs at most one renewal, not the lease, before beat
    /// knows (the connection would otherwise wait for its reconnect).
    call_timeout: std::time::Duration,
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
    pub fn new(
        redis: RedisConnection,
        key: String,
        holder: String,
        ttl: std::time::Duration,
    ) -> RedisLease {
        RedisLease {
            redis,
            call_timeout: ttl / 4,
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
        let mut connection = self.redis.manager();
        let mut set = redis::cmd("SET");
        set.arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let set: redis::RedisResult<Option<String>> =
            self.bounded(set.query_async(&mut connection)).await;
        self.observe(&set);
        match set {
            Ok(Some(_)) => Acquired::Won,
            Ok(None) => {
                let mut pttl = redis::cmd("PTTL");
                pttl.arg(&self.key);
                let pttl: redis::RedisResult<i64> =
                    self.bounded(pttl.query_async(&mut connection)).await;
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
            Err(_) => Acquired::Failed,
        }
    }

    pub async fn renew(&mut self, ttl_ms: u64) -> Renewed {
        let mut connection = self.redis.manager();
        let mut renew = self.renew.prepare_invoke();
        renew.key(&self.key).arg(&self.holder).arg(ttl_ms);
        let renewed: redis::RedisResult<i64> =
            self.bounded(renew.invoke_async(&mut connection)).await;
        self.observe(&renewed);
        match renewed {
            Ok(1) => Renewed::Yes,
            Ok(_) => Renewed::Lost,
            Err(_) => Renewed::Failed,
        }
    }

    /// Gives the lease up (on shutdown), if it is still ours.
    pub async fn release(&mut self) -> bool {
        let mut connection = self.redis.manager();
        let mut release = self.release.prepare_invoke();
        release.key(&self.key).arg(&self.holder);
        let released: redis::RedisResult<i64> =
            self.bounded(release.invoke_async(&mut connection)).await;
        matches!(released, Ok(1))
    }

    /// Runs one lease command within [`call_timeout`](Self::call_timeout).
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        super::state::bounded(self.call_timeout, call).await
    }

    /// Reports a call's outcome: a lost connection once to the watch, a
    /// refusal by Redis each time (it would not cure itself).
    fn observe<T>(&self, result: &redis::RedisResult<T>) {
        match result {
            Ok(_) => {
                self.redis.watch().ok();
            }
            Err(error) if is_connection_error(error) => self.redis.watch().lost(error),
            Err(error) => {
                tracing::warn!(key = %self.key, "beat: Redis refused a lease command: {error}")
            }
        }
    }
}

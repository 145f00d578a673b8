//! The connection every Redis command here goes through: redis'
//! `ConnectionManager`, which reconnects by itself, plus — under Sentinel —
//! following the master when it moves.
//!
//! `ConnectionManager` only ever reconnects to the address it was made
//! with. After a Sentinel failover that address is a dead process, or the
//! old master back as a replica that answers every write with `READONLY`.
//! So when a command fails in a way that says "the master may have moved",
//! we ask the sentinels again and, if they name another node, swap in a
//! manager for it. The failed command still returns its error: every caller
//! already retries connection errors (see [`super::is_connection_error`]),
//! and its retry lands on the new master.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use redis::{
    Client, Cmd, ErrorKind, Pipeline, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
};
use tracing::debug;

use super::locate::Locator;

/// How long one TCP connect may take before it counts as failed.
pub(super) const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may wait for its answer: long enough for a big
/// batch on a busy Redis, short enough that a hung Redis is noticed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The sentinels are asked at most this often while commands keep failing
/// (a worker's loops fail together; one lookup serves them all).
const LOOKUP_INTERVAL: Duration = Duration::from_millis(250);

/// A self-reconnecting connection that follows a Sentinel failover. Cheap
/// to clone: clones share the connection.
#[derive(Clone)]
pub struct ManagedConnection {
    shared: Arc<Shared>,
}

struct Shared {
    locator: Arc<Locator>,
    current: RwLock<Arc<Master>>,
    /// One lookup at a time, and when the last one ran.
    lookup: tokio::sync::Mutex<Option<Instant>>,
    db: i64,
}

/// The node we talk to, and the manager connected to it.
struct Master {
    address: String,
    manager: ConnectionManager,
}

impl std::fmt::Debug for ManagedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address only: the client inside holds the password.
        f.debug_struct("ManagedConnection")
            .field("master", &self.current().address)
            .finish_non_exhaustive()
    }
}

impl ManagedConnection {
    /// Finds the Redis and connects to it.
    pub(super) async fn connect(locator: Arc<Locator>) -> RedisResult<Self> {
        let client = locator.master().await?;
        let master = connect_manager(&locator, client).await?;
        let db = master.manager.get_db();
        Ok(Self {
            shared: Arc::new(Shared {
                locator,
                current: RwLock::new(Arc::new(master)),
                lookup: tokio::sync::Mutex::new(None),
                db,
            }),
        })
    }

    fn current(&self) -> Arc<Master> {
        match self.shared.current.read() {
            Ok(current) => current.clone(),
            // A panic while swapping cannot leave a half-written Arc.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a failed command: if the master may have moved, asks the
    /// sentinels where it is now and moves there.
    async fn follow_master(&self, failed_on: &Arc<Master>, error: &redis::RedisError) {
        let Some(sentinel) = self.shared.locator.sentinel() else {
            return;
        };
        if !master_may_have_moved(error) {
            return;
        }
        let mut last_lookup = self.shared.lookup.lock().await;
        // Another command may have moved us while we waited for the lock.
        if !Arc::ptr_eq(&self.current(), failed_on)
            || last_lookup.is_some_and(|at| at.elapsed() < LOOKUP_INTERVAL)
        {
            return;
        }
        *last_lookup = Some(Instant::now());
        let client = match self.shared.locator.master().await {
            Ok(client) => client,
            // Mid-failover the sentinels name no live master for a while:
            // the next failure asks again.
            Err(lookup_error) => {
                debug!(%lookup_error, "Redis Sentinel names no live master for '{}' yet", sentinel.master_name());
                return;
            }
        };
        let address = client.get_connection_info().addr().to_string();
        if address == failed_on.address {
            return;
        }
        match connect_manager(&self.shared.locator, client).await {
            Ok(master) => {
                let master = Arc::new(master);
                match self.shared.current.write() {
                    Ok(mut current) => *current = master,
                    Err(poisoned) => *poisoned.into_inner() = master,
                }
            }
            Err(connect_error) => {
                debug!(%connect_error, "cannot reach the new Redis master at {address} yet");
            }
        }
    }
}

impl ConnectionLike for ManagedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let master = self.current();
            let result = master.manager.clone().req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.follow_master(&master, error).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let master = self.current();
            let result = master
                .manager
                .clone()
                .req_packed_commands(pipeline, offset, count)
                .await;
            if let Err(error) = &result {
                self.follow_master(&master, error).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

/// The failures after which the master is worth looking for again: it is
/// gone, or the node we reach is no longer master.
fn master_may_have_moved(error: &redis::RedisError) -> bool {
    super::is_connection_error(error)
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

async fn connect_manager(locator: &Locator, client: Client) -> RedisResult<Master> {
    let address = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_ATTEMPT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    // A fixed Redis is worth waiting for: retry the one address, with
    // backoff, inside each command. Under Sentinel, retrying a dead
    // master's address only delays asking where the master went.
    let config = match locator.sentinel() {
        None => config
            .set_number_of_retries(8)
            .set_max_delay(Duration::from_secs(5)),
        Some(_) => config
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200)),
    };
    let manager = ConnectionManager::new_with_config(client, config).await?;
    Ok(Master { address, manager })
}

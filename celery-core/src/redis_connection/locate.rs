//! Where a Redis is: one fixed address (`redis://`), or whichever node
//! Redis Sentinel names master right now (`sentinel://`).
//!
//! The Sentinel form is kombu's: a `;`-separated list with one sentinel per
//! URL, and the master's name given apart (`--sentinel-master`, kombu's
//! `master_name` transport option):
//!
//! ```text
//! sentinel://127.0.0.1:26391;sentinel://127.0.0.1:26392;sentinel://:PASSWORD@127.0.0.1:26393/7
//! ```
//!
//! As in kombu, the password and database number are the *master's*; the
//! sentinels are asked without a password. kombu and Celery's Sentinel
//! result backend read them from the first URL only, and so do we: a Python
//! worker with the same setting must land on the same database. A later URL
//! that names another one is logged as ignored, so the surprise is not
//! silent. A sentinel without a port is on 26379, Sentinel's own port.

use amqp_connect::redact::split_url_list;
use redis::{
    Client, ConnectionAddr, IntoConnectionInfo, RedisResult,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use tracing::warn;

/// Sentinel's default port, as kombu's `sentinel://` transport assumes.
const SENTINEL_PORT: u16 = 26379;

/// How to find the Redis a connection talks to.
pub(super) enum Locator {
    /// One address, named by a `redis://` or `rediss://` URL.
    Fixed(Client),
    /// The master Sentinel names, looked up again after every failover.
    Sentinel(SentinelLookup),
}

/// A master found through Sentinel.
pub(super) struct SentinelLookup {
    master_name: String,
    /// `host:port` of each sentinel, for messages.
    sentinels: Vec<String>,
    /// Asks the sentinels (its lookup needs `&mut`: it caches their connections).
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master the last lookup found, to say so when it moves.
    known_master: std::sync::Mutex<Option<String>>,
}

impl Locator {
    /// Reads `url`: a Redis URL, or a list of sentinel URLs for which
    /// `sentinel_master` names the master. The error is the reason, for the
    /// caller to wrap with the setting it came from.
    pub(super) fn parse(url: &str, sentinel_master: Option<&str>) -> Result<Self, String> {
        if !is_sentinel_url(url) {
            return Client::open(url)
                .map(Locator::Fixed)
                .map_err(|error| error.to_string());
        }
        let master_name = sentinel_master.map(str::trim).unwrap_or_default();
        if master_name.is_empty() {
            return Err("a sentinel:// URL needs the master's name: pass --sentinel-master NAME (or set CELERY_SENTINEL_MASTER), as kombu's master_name transport option".to_owned());
        }
        let parsed = parse_sentinels(url)?;
        let mut builder = SentinelClientBuilder::new(
            parsed.addresses.clone(),
            master_name,
            SentinelServerType::Master,
        )
        .map_err(|error| error.to_string())?
        .set_client_to_redis_db(parsed.db);
        if let Some(username) = &parsed.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &parsed.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let client = builder.build().map_err(|error| error.to_string())?;
        Ok(Locator::Sentinel(SentinelLookup {
            master_name: master_name.to_owned(),
            sentinels: parsed.addresses.iter().map(ToString::to_string).collect(),
            client: tokio::sync::Mutex::new(client),
            known_master: std::sync::Mutex::new(None),
        }))
    }

    /// A client for the Redis to talk to now: the fixed one, or the node the
    /// sentinels name master (checked to call itself master with `ROLE`).
    pub(super) async fn master(&self) -> RedisResult<Client> {
        match self {
            Locator::Fixed(client) => Ok(client.clone()),
            Locator::Sentinel(lookup) => {
                let client = lookup.client.lock().await.async_get_client().await?;
                lookup.found(&client);
                Ok(client)
            }
        }
    }

    /// The Sentinel lookup, if the master can move.
    pub(super) fn sentinel(&self) -> Option<&SentinelLookup> {
        match self {
            Locator::Fixed(_) => None,
            Locator::Sentinel(lookup) => Some(lookup),
        }
    }
}

impl SentinelLookup {
    pub(super) fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Notes the master a lookup found, and logs a move once per
    /// connection, however many of its users noticed it.
    fn found(&self, master: &Client) {
        let address = master.get_connection_info().addr().to_string();
        let mut known = match self.known_master.lock() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(previous) = known.as_ref().filter(|previous| **previous != address) {
            warn!(
                "Redis Sentinel moved master '{}' from {previous} to {address}: following it",
                self.master_name
            );
        }
        *known = Some(address);
    }

    /// "sentinels 127.0.0.1:26391, 127.0.0.1:26392", for messages.
    pub(super) fn describe(&self) -> String {
        format!(
            "master '{}' via sentinels {}",
            self.master_name,
            self.sentinels.join(", ")
        )
    }
}

/// True if `url` names sentinels rather than a Redis.
pub fn is_sentinel_url(url: &str) -> bool {
    after_sentinel_scheme(url.trim_start()).is_some()
}

/// What follows `sentinel://` (in any case), if that is the scheme.
fn after_sentinel_scheme(url: &str) -> Option<&str> {
    const SCHEME: &str = "sentinel://";
    let scheme = url.get(..SCHEME.len())?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| url.get(SCHEME.len()..))
        .flatten()
}

/// What a sentinel list says: where the sentinels are, and how to log in to
/// the master they name.
#[derive(Debug, PartialEq)]
struct SentinelList {
    addresses: Vec<ConnectionAddr>,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

fn parse_sentinels(list: &str) -> Result<SentinelList, String> {
    let mut parsed: Option<SentinelList> = None;
    for (position, url) in split_url_list(list)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .enumerate()
    {
        let shown = amqp_connect::Redacted(url);
        let Some(rest) = after_sentinel_scheme(url) else {
            return Err(format!(
                "'{shown}' is not a sentinel:// URL; a sentinel list holds sentinel:// URLs only"
            ));
        };
        // redis' own parser reads the rest once the scheme is its own; only
        // the default port differs.
        let mut as_redis = url::Url::parse(&format!("redis://{rest}"))
            .map_err(|error| format!("'{shown}': {error}"))?;
        if as_redis.port().is_none() {
            // Cannot fail: a redis:// URL with a host takes a port.
            let _ = as_redis.set_port(Some(SENTINEL_PORT));
        }
        let info = as_redis
            .into_connection_info()
            .map_err(|error| format!("'{shown}': {error}"))?;
        let settings = info.redis_settings();
        match parsed.as_mut() {
            None => {
                parsed = Some(SentinelList {
                    addresses: vec![info.addr().clone()],
                    db: settings.db(),
                    username: settings.username().map(str::to_owned),
                    password: settings.password().map(str::to_owned),
                })
            }
            Some(first) => {
                let differs = (rest.contains('/') && settings.db() != first.db)
                    || settings
                        .password()
                        .is_some_and(|password| Some(password) != first.password.as_deref());
                if differs {
                    warn!(
                        "sentinel URL {} ('{shown}') names another database or password than the first; as in Celery and kombu, the first URL's are used: write them on the first URL",
                        position + 1
                    );
                }
                first.addresses.push(info.addr().clone());
            }
        }
    }
    parsed.ok_or_else(|| "the sentinel list is empty".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> ConnectionAddr {
        ConnectionAddr::Tcp("127.0.0.1".to_owned(), port)
    }

    #[test]
    fn the_database_and_password_come_from_the_first_url_as_in_celery() {
        let parsed =
            parse_sentinels("sentinel://:s3cret@127.0.0.1:26379/7;sentinel://127.0.0.1:26380/7")
                .unwrap();
        assert_eq!(parsed.addresses, vec![tcp(26379), tcp(26380)]);
        assert_eq!(parsed.db, 7);
        assert_eq!(parsed.password.as_deref(), Some("s3cret"));
        // Celery's SentinelBackend and kombu ignore a later URL's database.
        let parsed =
            parse_sentinels("sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/7").unwrap();
        assert_eq!(parsed.db, 0);
    }

    #[test]
    fn a_sentinel_without_a_port_is_on_sentinel_s_port() {
        let parsed = parse_sentinels("sentinel://127.0.0.1").unwrap();
        assert_eq!(parsed.addresses, vec![tcp(26379)]);
    }

    #[test]
    fn a_redis_url_in_a_sentinel_list_is_refused() {
        let error =
            parse_sentinels("sentinel://127.0.0.1:1;redis://:pw@127.0.0.1:6379/0").unwrap_err();
        assert!(error.contains("is not a sentinel:// URL"), "{error}");
        assert!(!error.contains(":pw@"), "{error}");
    }

    #[test]
    fn a_sentinel_url_needs_the_master_s_name() {
        let Err(error) = Locator::parse("sentinel://127.0.0.1:26391", None) else {
            panic!("accepted without a master name");
        };
        assert!(error.contains("--sentinel-master"), "{error}");
    }

    #[test]
    fn a_bad_port_is_a_clear_error() {
        let error = parse_sentinels("sentinel://127.0.0.1:notaport").unwrap_err();
        assert!(error.contains("127.0.0.1:notaport"), "{error}");
    }

    #[test]
    fn the_scheme_is_read_whatever_its_case() {
        assert!(is_sentinel_url("SENTINEL://h:1"));
        assert!(!is_sentinel_url("redis://h:1/0"));
        assert!(!is_sentinel_url("sentinel"));
    }
}

//! A cluster's nodes behind one connection: Celery's
//! `broker_url = 'amqp://h1//;amqp://h2//;amqp://h3//'`.
//!
//! lapin's automatic recovery reconnects to the address it was first given
//! and to nothing else: its I/O loop calls its connect function again, with
//! the same URI, at each backoff step. When that address is a node that died,
//! recovery only succeeds if the node comes back. So [`connect_amqp`] hands
//! lapin a connect function of ours ([`lapin::Connection::connector`]) that
//! takes the **next node of the list on every call**:
//!
//! * the first connect goes to the first node whose port answers;
//! * each recovery attempt goes to the node after the one that failed,
//!   round-robin, at lapin's backoff (200 ms doubling to 3 s, 20 attempts);
//! * recovery then replays the channels, queues, bindings, QoS and consumers
//!   on the new node, as it would on the old one. A quorum queue lives on
//!   every node, so the consumers find it there with their unacked messages
//!   back in it.
//!
//! All the URLs of a list must log in the same way (user, password, vhost):
//! lapin authenticates every reconnect with the first URL's credentials.
//!
//! [`connect_amqp`]: crate::connect_amqp

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use lapin::{
    tcp::{AMQPUriTcpExt, AsyncTcpStream, OwnedTLSConfig},
    uri::AMQPUri,
};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::{
    error::AmqpError,
    redact::{Redacted, split_url_list},
    url::parse_amqp_url,
};

/// How long one node gets to accept a TCP connection before the next is
/// tried: a node whose host is gone (not just its process) never answers,
/// and the kernel's own timeout is two minutes.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The nodes of a `;`-separated broker URL list, and which one is next.
#[derive(Debug)]
pub struct AmqpNodes {
    nodes: Vec<Node>,
    /// The node the next connect attempt goes to (modulo the count).
    next: AtomicUsize,
    /// The node of the connection in use, for "failing over from … to …".
    current: AtomicUsize,
}

#[derive(Debug)]
struct Node {
    uri: AMQPUri,
    /// `host:port`, for short per-node causes.
    address: String,
    /// The URL with its password hidden.
    shown: String,
    /// Why the last attempt on this node failed, if it did.
    last_failure: Mutex<Option<String>>,
}

impl AmqpNodes {
    /// Parses `amqp://h1//;amqp://h2//` (or a single URL) without touching
    /// the network.
    pub fn parse(list: &str) -> Result<Self, AmqpError> {
        let invalid = |reason: &str| AmqpError::InvalidUrl {
            url: Redacted(list).to_string(),
            reason: reason.to_owned(),
        };
        let mut nodes = Vec::new();
        // A trailing `;` (a list being edited) is not an empty last node.
        for url in split_url_list(list.trim().trim_end_matches(';')) {
            let uri = parse_amqp_url(url)?;
            nodes.push(Node {
                address: format!("{}:{}", uri.authority.host, uri.authority.port),
                shown: Redacted(url).to_string(),
                uri,
                last_failure: Mutex::new(None),
            });
        }
        let Some(first) = nodes.first() else {
            return Err(invalid("no URL in the list"));
        };
        if nodes.iter().any(|node| {
            node.uri.authority.userinfo != first.uri.authority.userinfo
                || node.uri.vhost != first.uri.vhost
        }) {
            return Err(invalid(
                "every URL of a ';'-separated list must have the same user, password and vhost (only the host and port may differ)",
            ));
        }
        Ok(Self {
            nodes,
            next: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
        })
    }

    /// How many nodes the list names.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a list has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The first node's URI: the login, vhost and connection options for
    /// every node.
    pub fn first_uri(&self) -> &AMQPUri {
        // `parse` refuses an empty list.
        &self.nodes[0].uri
    }

    /// Waits until some node's port answers, trying them in turn with a
    /// backoff, and makes that node the next to connect to. On `deadline`,
    /// says why each node failed.
    ///
    /// We do this ourselves, before lapin connects, because lapin's own retry
    /// (its recovery backoff) runs on its I/O thread and cannot be cancelled:
    /// a broker that never comes up must end in our clear error, not in a
    /// background thread still retrying as the process exits.
    pub async fn wait_for_one(&self, deadline: Instant) -> Result<(), String> {
        let mut delay = Duration::from_millis(100);
        loop {
            for (index, node) in self.nodes.iter().enumerate() {
                let remaining = deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(100), NODE_CONNECT_TIMEOUT);
                let address = (node.uri.authority.host.as_str(), node.uri.authority.port);
                let cause =
                    match tokio::time::timeout(remaining, tokio::net::TcpStream::connect(address))
                        .await
                    {
                        Ok(Ok(_stream)) => {
                            self.next.store(index, Ordering::Relaxed);
                            self.current.store(index, Ordering::Relaxed);
                            return Ok(());
                        }
                        Ok(Err(error)) => error.to_string(),
                        Err(_elapsed) => "no answer from the host".to_owned(),
                    };
                node.failed(cause);
            }
            if Instant::now() + delay >= deadline {
                return Err(self.failures());
            }
            debug!(causes = %self.failures(), "RabbitMQ not reachable yet; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Opens a TCP (or TLS) stream to the next node: lapin's connect
    /// function, for the first connect and every recovery attempt.
    pub async fn connect_next<RK>(
        &self,
        runtime: &async_rs::Runtime<RK>,
        tls: &OwnedTLSConfig,
    ) -> lapin::Result<AsyncTcpStream<<RK as async_rs::traits::Reactor>::TcpStream>>
    where
        RK: async_rs::traits::RuntimeKit + Send + Sync,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        let node = &self.nodes[index];
        let attempt = node.uri.connect_with_config_async(tls.as_ref(), runtime);
        let cause = match tokio::time::timeout(NODE_CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(stream)) => {
                let previous = self.current.swap(index, Ordering::Relaxed);
                if previous != index {
                    info!(
                        "Failing over from RabbitMQ node {} to {} (node {} of {})",
                        self.nodes[previous].address,
                        node.shown,
                        index + 1,
                        self.nodes.len()
                    );
                }
                return Ok(stream);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_elapsed) => format!("no answer within {NODE_CONNECT_TIMEOUT:?}"),
        };
        debug!(node = %node.address, %cause, "connecting to a RabbitMQ node failed");
        node.failed(cause.clone());
        Err(std::io::Error::other(cause).into())
    }

    /// "127.0.0.1:5681: Connection refused; 127.0.0.1:5682: …": the last
    /// failure of every node that failed. A single node's is just its cause.
    pub fn failures(&self) -> String {
        let causes: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|node| {
                let cause = node.last_failure()?;
                Some(if self.nodes.len() == 1 {
                    cause
                } else {
                    format!("{}: {cause}", node.address)
                })
            })
            .collect();
        causes.join("; ")
    }
}

impl Node {
    fn failed(&self, cause: String) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cause);
    }

    fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_url_is_a_list_of_one() {
        let nodes = AmqpNodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes.first_uri().authority.port, 5672);
    }

    #[test]
    fn celerys_list_names_every_node_in_order() {
        let nodes = AmqpNodes::parse(
            "amqp://guest:guest@127.0.0.1:5681/%2f;amqp://guest:guest@127.0.0.1:5682/%2f;amqp://guest:guest@127.0.0.1:5683/%2f",
        )
        .unwrap();
        let ports: Vec<u16> = nodes
            .nodes
            .iter()
            .map(|node| node.uri.authority.port)
            .collect();
        assert_eq!(ports, [5681, 5682, 5683]);
        assert_eq!(nodes.nodes[1].shown, "amqp://guest:**@127.0.0.1:5682/%2f");
    }

    #[test]
    fn a_list_must_log_in_one_way() {
        for list in [
            "amqp://guest:secret@h1/%2f;amqp://guest:other@h2/%2f",
            "amqp://guest:secret@h1/%2f;amqp://admin:secret@h2/%2f",
            "amqp://guest:secret@h1/%2f;amqp://guest:secret@h2/other",
        ] {
            let message = AmqpNodes::parse(list).unwrap_err().to_string();
            assert!(
                message.contains("same user, password and vhost"),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn a_bad_url_in_a_list_is_named() {
        let message = AmqpNodes::parse("amqp://guest:secret@h1/%2f;amqp://guest:secret@h2:port/")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("invalid AMQP URL"), "{message}");
        assert!(message.contains("h2:port"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(AmqpNodes::parse("").is_err());
    }

    /// Nothing listens on ports 1 and 2: the error names both, with causes.
    #[tokio::test]
    async fn no_node_answering_names_every_node_tried() {
        let nodes =
            AmqpNodes::parse("amqp://u:p@127.0.0.1:1/%2f;amqp://u:p@127.0.0.1:2/%2f").unwrap();
        let causes = nodes
            .wait_for_one(Instant::now() + Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(causes.contains("127.0.0.1:1: "), "{causes}");
        assert!(causes.contains("127.0.0.1:2: "), "{causes}");
    }
}

//! The three-node cluster of `scripts/cluster`, for the fault tests of
//! "Beyond one machine": its URL list, and the operator's hands (kill a
//! node, start it again, see where a connection or a queue's leader is).
//!
//! These tests are `#[ignore]`d, since they need the cluster running;
//! `scripts/test` starts it, runs them one at a time (`--ignored
//! --test-threads=1`: they kill nodes) and stops it. Every test still uses
//! its own queue names, and kills only nodes of this cluster, never the
//! broker the other tests use.

use std::{path::PathBuf, process::Command, time::Duration};

/// The nodes, as `scripts/cluster` names them.
pub const NODES: [&str; 3] = ["c1", "c2", "c3"];

/// Celery's broker URL list for the three nodes.
pub fn url() -> String {
    NODES
        .iter()
        .map(|node| format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp_port(node)))
        .collect::<Vec<_>>()
        .join(";")
}

/// One node's own URL.
pub fn node_url(node: &str) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp_port(node))
}

fn amqp_port(node: &str) -> u16 {
    match node {
        "c1" => 5681,
        "c2" => 5682,
        "c3" => 5683,
        other => panic!("no node {other} in scripts/cluster"), // ok-panic: test support only; a node name is a test's constant, and a wrong one must fail that test loudly
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

fn ctl(node: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "-n", &format!("{node}@localhost")])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Is `node` up?
pub fn is_running(node: &str) -> bool {
    ctl(node, &["ping"]).is_some()
}

/// Panics with the command to run when the cluster is not up, so that a
/// test never passes (or hangs) against nothing.
pub fn require() {
    // A node a previous test killed and that test's failure left down.
    for node in NODES {
        if !is_running(node) && script().exists() {
            start_node(node);
        }
    }
    let down: Vec<&str> = NODES.into_iter().filter(|node| !is_running(node)).collect();
    assert!(
        down.is_empty(),
        "the cluster is not running (nodes down: {down:?}); start it with `scripts/cluster start`"
    );
}

/// `kill -9` the node: a crash, not a shutdown.
pub fn kill(node: &str) {
    let status = Command::new(script()).args(["kill", node]).status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "scripts/cluster kill {node} failed"
    );
}

/// Starts a node again with the data it had; returns once it is up.
pub fn start_node(node: &str) {
    let status = Command::new(script()).args(["start-node", node]).status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "scripts/cluster start-node {node} failed"
    );
}

/// A node that is up, to ask about the cluster.
fn live_node() -> &'static str {
    NODES
        .into_iter()
        .find(|node| is_running(node))
        .unwrap_or_else(|| panic!("no node of the cluster is up")) // ok-panic: test support only; a cluster with no node up fails the calling test
}

/// The node holding the connection whose name contains `name_part`.
pub fn node_of_connection(name_part: &str) -> Option<String> {
    let listing = ctl(
        live_node(),
        &["list_connections", "pid", "client_properties"],
    )?;
    listing
        .lines()
        .filter(|line| line.contains(name_part))
        .find_map(|line| {
            // pid: <c2@localhost.1700000000.1234.0>
            let node = line.split('\t').next()?.trim_start_matches('<');
            Some(node.split('@').next()?.to_owned())
        })
}

/// The node of the queue's Raft leader (`c1`, `c2` or `c3`).
pub fn queue_leader(queue: &str) -> Option<String> {
    let listing = ctl(live_node(), &["list_queues", "name", "leader"])?;
    listing.lines().find_map(|line| {
        let mut fields = line.split('\t');
        (fields.next()? == queue)
            .then(|| fields.next())??
            .split('@')
            .next()
            .map(str::to_owned)
    })
}

/// Ready and unacked messages of `queue`, as the cluster counts them.
pub fn queue_counts(queue: &str) -> Option<(u64, u64)> {
    let listing = ctl(
        live_node(),
        &[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
    )?;
    listing.lines().find_map(|line| {
        let mut fields = line.split('\t');
        if fields.next()? != queue {
            return None;
        }
        Some((
            fields.next()?.trim().parse().ok()?,
            fields.next()?.trim().parse().ok()?,
        ))
    })
}

/// Each member's Raft log as `rabbitmq-queues quorum_status` shows it:
/// `(node, raft state, commit index)`.
pub fn quorum_members(queue: &str) -> Vec<(String, String, u64)> {
    let output = Command::new("rabbitmq-queues")
        .args(["-q", "-n", &format!("{}@localhost", live_node())])
        .args(["quorum_status", queue, "--formatter", "json"])
        .output();
    let Ok(output) = output else {
        return Vec::new();
    };
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    rows.iter()
        .filter_map(|row| {
            Some((
                row["Node Name"].as_str()?.to_owned(),
                row["Raft State"].as_str()?.to_owned(),
                row["Commit Index"].as_u64()?,
            ))
        })
        .collect()
}

/// Waits until every member of the queue reports the same commit index
/// (the restarted one has caught up), or `timeout`. Returns the last view.
pub fn wait_for_replicas_in_sync(queue: &str, timeout: Duration) -> Vec<(String, String, u64)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let members = quorum_members(queue);
        let in_sync =
            members.len() == NODES.len() && members.windows(2).all(|pair| pair[0].2 == pair[1].2);
        if in_sync || std::time::Instant::now() > deadline {
            return members;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Deletes a test queue through any live node.
pub fn delete_queue(queue: &str) {
    let _ = ctl(live_node(), &["delete_queue", queue]);
}

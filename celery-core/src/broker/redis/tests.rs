//! Test-only file, compiled under `#[cfg(test)]` (see `mod.rs`).
//!
//! `fetch.lua` and `restore.lua` against the real Redis. The scripts take
//! every key they touch as an argument, so each test passes keys of its own
//! (`unique_name`) and runs beside any other test, and twice in a row.

use redis::{AsyncCommands, Script, aio::MultiplexedConnection};
use serde_json::{Map, Value, json};

use super::consumer::{FETCH_SCRIPT, RESTORE_SCRIPT};
use crate::protocol::{SendOptions, TaskMessage, redis_envelope};
use shared::testing::unique_name;

async fn redis() -> MultiplexedConnection {
    redis::Client::open("redis://127.0.0.1:6379/12")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is not running: scripts/services starts it")
}

/// The keys of one test: a queue, and its own `unacked` hash and index.
struct Keys {
    queue: String,
    unacked: String,
    index: String,
}

impl Keys {
    fn new() -> Keys {
        let queue = unique_name("lua-queue");
        Keys {
            unacked: format!("{queue}.unacked"),
            index: format!("{queue}.unacked_index"),
            queue,
        }
    }

    async fn clean(&self, connection: &mut MultiplexedConnection) {
        let mut keys = vec![self.unacked.clone(), self.index.clone()];
        keys.extend(redis_envelope::queue_lists(&self.queue));
        let _: () = connection.del(keys).await.unwrap();
    }
}

fn envelope(code: &str, queue: &str) -> (String, String) {
    let message = TaskMessage::new(
        "SMS",
        vec![json!("13800000000"), json!(code)],
        Map::new(),
        &SendOptions::default(),
    );
    (
        message.headers.id.clone(),
        redis_envelope::encode(&message, queue),
    )
}

/// Runs `fetch.lua` on one queue: (tag, envelope, queue) triples.
async fn fetch(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
    max: usize,
    now: f64,
) -> Vec<(String, String, String)> {
    let script = Script::new(FETCH_SCRIPT);
    let mut invocation = script.prepare_invoke();
    invocation.key(&keys.unacked).key(&keys.index);
    invocation.arg(max).arg(now).arg("test-round");
    for list in redis_envelope::queue_lists(&keys.queue) {
        invocation.key(list).arg(&keys.queue);
    }
    let flat: Vec<String> = invocation.invoke_async(connection).await.unwrap();
    flat.chunks(3)
        .map(|triple| (triple[0].clone(), triple[1].clone(), triple[2].clone()))
        .collect()
}

fn tag_of(raw: &str) -> String {
    let envelope: Value = serde_json::from_str(raw).unwrap();
    envelope["properties"]["delivery_tag"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn fetch_pops_in_order_and_records_each_in_the_same_step() {
    let (keys, mut connection) = (Keys::new(), redis().await);
    let sent: Vec<(String, String)> = ["1111", "2222", "3333"]
        .iter()
        .map(|code| envelope(code, &keys.queue))
        .collect();
    for (_, raw) in &sent {
        let _: usize = connection.lpush(&keys.queue, raw).await.unwrap();
    }
    let fetched = fetch(&mut connection, &keys, 2, 1234.5).await;
    // FIFO: LPUSHed first, popped first.
    assert_eq!(fetched.len(), 2);
    for ((tag, raw, queue), (_, sent_raw)) in fetched.iter().zip(&sent) {
        assert_eq!(raw, sent_raw);
        assert_eq!(queue, &keys.queue);
        assert_eq!(tag, &tag_of(sent_raw));
        // kombu's entry: [envelope, exchange, routing key], fetched at `now`.
        let entry: String = connection.hget(&keys.unacked, tag).await.unwrap();
        let entry: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(entry[1], "");
        assert_eq!(entry[2], keys.queue.as_str());
        let score: f64 = connection.zscore(&keys.index, tag).await.unwrap();
        assert_eq!(score, 1234.5);
    }
    let left: usize = connection.llen(&keys.queue).await.unwrap();
    assert_eq!(left, 1);
    keys.clean(&mut connection).await;
}

#[tokio::test]
async fn fetch_keeps_tags_unique_and_leaves_non_json_unrecorded() {
    let (keys, mut connection) = (Keys::new(), redis().await);
    let (_, raw) = envelope("1111", &keys.queue);
    // The same envelope twice (a careless producer reusing its tag), then junk.
    for item in [raw.as_str(), raw.as_str(), "not json {"] {
        let _: usize = connection.lpush(&keys.queue, item).await.unwrap();
    }
    let fetched = fetch(&mut connection, &keys, 10, 1.0).await;
    assert_eq!(fetched.len(), 3);
    let (first, second, junk) = (&fetched[0].0, &fetched[1].0, &fetched[2].0);
    assert_eq!(first, &tag_of(&raw));
    assert_ne!(
        second, first,
        "two messages must not share one unacked entry"
    );
    assert!(second.starts_with(first.as_str()), "{second}");
    assert_eq!(junk, "", "a non-JSON message gets no bookkeeping");
    let recorded: usize = connection.hlen(&keys.unacked).await.unwrap();
    assert_eq!(recorded, 2);
    keys.clean(&mut connection).await;
}

#[tokio::test]
async fn restore_puts_back_marked_redelivered_to_the_right_end_and_list() {
    let (keys, mut connection) = (Keys::new(), redis().await);
    let prioritised = || {
        let options = SendOptions {
            priority: 5,
            ..SendOptions::default()
        };
        TaskMessage::new("SMS", vec![], Map::new(), &options)
    };
    let (message, waiting) = (prioritised(), prioritised());
    let raw = redis_envelope::encode(&message, &keys.queue);
    let high = redis_envelope::priority_list(&keys.queue, 5);
    let _: usize = connection.lpush(&high, &raw).await.unwrap();
    let _: usize = connection
        .lpush(&high, redis_envelope::encode(&waiting, &keys.queue))
        .await
        .unwrap();
    // `message` is fetched at t=10; the other one stays waiting in the list.
    let fetch_script = Script::new(FETCH_SCRIPT);
    let mut invocation = fetch_script.prepare_invoke();
    invocation
        .key(&keys.unacked)
        .key(&keys.index)
        .arg(1)
        .arg(10.0)
        .arg("r")
        .key(&high)
        .arg(&keys.queue);
    let flat: Vec<String> = invocation.invoke_async(&mut connection).await.unwrap();
    let tag = flat[0].clone();

    let restore_script = Script::new(RESTORE_SCRIPT);
    let restore = |cutoff: f64, end: &'static str| {
        let mut invocation = restore_script.prepare_invoke();
        invocation
            .key(&keys.unacked)
            .key(&keys.index)
            .arg(cutoff)
            .arg(end)
            .arg(&tag);
        invocation
    };
    // Fetched after the cutoff: a sweep must leave it to its owner.
    let restored: usize = restore(5.0, "right")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(restored, 0);
    let restored: usize = restore(10.0, "right")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(restored, 1);
    // RPUSH: back at the consuming end of its priority list (5 → the "3"
    // list), ahead of the one that waited: served next.
    let next: String = connection.rpop(&high, None).await.unwrap();
    let back: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(back["headers"]["id"], message.headers.id.as_str());
    assert_eq!(back["headers"]["redelivered"], true);
    assert_eq!(back["properties"]["delivery_info"]["redelivered"], true);
    let recorded: usize = connection.hlen(&keys.unacked).await.unwrap();
    assert_eq!(recorded, 0, "restored means no longer unacked");
    keys.clean(&mut connection).await;
}

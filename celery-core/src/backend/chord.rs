//! The chord counter, kept in the result backend's Redis on Celery 5.7's
//! own keys (`celery-canvas-control-events.md` §1.6), so that a chord whose
//! header runs partly on Python workers and partly on ours completes once,
//! on whichever worker finishes the last header task:
//!
//! | key `celery-taskset-meta-<gid>…` | holds |
//! |---|---|
//! | `.s` | the header's size, set by the producer before it sends |
//! | `.j` | each header result, scored by `group_index` |
//! | `.t` | a size correction (Celery's `add_to_chord`) |
//! | `.d` | `"<id>:<index>"` of results already counted, so a redelivered task counts once |
//! | `.c` | the claim on sending the body, then `done` |
//!
//! The three steps are Lua scripts, each atomic: count a part (and claim the
//! body if it was the last), extend the claim while the body is published,
//! clean up. Between them the claim is a lease with a deadline: a worker
//! that dies holding it lets another worker's redelivered header task claim
//! the body after it lapses.

use std::sync::LazyLock;

use redis::Script;
use serde_json::Value;

use super::header::header_entry;
use super::{BackendError, RESULT_EXPIRES, ResultBackend, TaskState};

static PART_RETURN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("chord_part_return.lua")));
static CLAIM_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("chord_claim_extend.lua")));
static CLEANUP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("chord_cleanup.lua")));

/// How long the claim on sending the body lasts while the header results
/// are read: Celery's `max(5, 2 × result_chord_join_timeout)`, 6 s by default.
const CLAIM_SECONDS: u64 = 6;
/// How long it lasts while the body is published: Celery's estimate for its
/// default publish retry policy (`4 × 4 s + 0.4 s + 4 s`, rounded up).
const PUBLISH_CLAIM_SECONDS: u64 = 21;
/// How long the `done` mark keeps late duplicates away (Celery: 300 s).
const DONE_SECONDS: u64 = 300;

/// `celery-taskset-meta-<gid><suffix>`.
pub fn group_key(group_id: &str, suffix: &str) -> String {
    format!("celery-taskset-meta-{group_id}{suffix}")
}

/// One finished header task, to be counted.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPart<'a> {
    pub group_id: &'a str,
    pub task_id: &'a str,
    pub group_index: Option<i64>,
    pub state: &'a TaskState,
    /// The result, or the exception as stored.
    pub result: &'a Value,
}

/// Where a chord stands after one of its parts was counted.
#[derive(Debug, Clone, PartialEq)]
pub enum ChordProgress {
    /// More parts to come, or another worker has the body in hand.
    Waiting,
    /// This was the last part, and this worker holds the claim on the body:
    /// the header's entries, in `group_index` order.
    Complete { entries: Vec<String>, claim: String },
}

impl ResultBackend {
    /// Records a chord's size before its header is sent (Celery's
    /// `set_chord_size`): a fresh run of a reused group id starts unclaimed.
    pub async fn set_chord_size(&self, group_id: &str, size: usize) -> Result<(), BackendError> {
        let mut connection = self.redis.manager();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(group_key(group_id, ".c"))
            .ignore()
            .set_ex(group_key(group_id, ".s"), size, RESULT_EXPIRES.as_secs())
            .ignore();
        self.checked(pipe.query_async::<()>(&mut connection).await)
    }

    /// Counts one finished header task. If it was the last, claims the body
    /// and reads every part.
    pub async fn chord_part_return(
        &self,
        part: &HeaderPart<'_>,
    ) -> Result<ChordProgress, BackendError> {
        let key = |suffix| group_key(part.group_id, suffix);
        let index = part
            .group_index
            .map_or_else(|| "+inf".to_owned(), |index| index.to_string());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let expires = RESULT_EXPIRES.as_secs();
        let mut connection = self.redis.manager();
        let (count, _diff, _size, claimed): (i64, Option<i64>, Option<i64>, i64) = self.checked(
            PART_RETURN
                .key(key(".j"))
                .key(key(".t"))
                .key(key(".s"))
                .key(key(".d"))
                .key(key(""))
                .key(key(".c"))
                .arg(part.task_id)
                .arg(header_entry(part.task_id, part.state, part.result))
                .arg(1)
                .arg(&index)
                .arg(expires)
                .arg(expires)
                .arg(CLAIM_SECONDS)
                .arg(&token)
                .invoke_async(&mut connection)
                .await,
        )?;
        if count < 0 || claimed != 1 {
            return Ok(ChordProgress::Waiting);
        }
        let entries: Vec<String> = self.checked(
            redis::cmd("ZRANGE")
                .arg(key(".j"))
                .arg(0)
                .arg(-1)
                .query_async(&mut connection)
                .await,
        )?;
        Ok(ChordProgress::Complete {
            entries,
            claim: token,
        })
    }

    /// Extends the claim for the time a publish may take. False: the claim
    /// was lost (it lapsed and another worker took it), so do not send.
    pub async fn hold_chord_claim(
        &self,
        group_id: &str,
        claim: &str,
    ) -> Result<bool, BackendError> {
        let mut connection = self.redis.manager();
        let held: i64 = self.checked(
            CLAIM_EXTEND
                .key(group_key(group_id, ".c"))
                .key(group_key(group_id, ".s"))
                .arg(claim)
                .arg(PUBLISH_CLAIM_SECONDS)
                .invoke_async(&mut connection)
                .await,
        )?;
        Ok(held == 1)
    }

    /// The body is sent: drops the counters and marks the chord done.
    pub async fn finish_chord(&self, group_id: &str, claim: &str) -> Result<bool, BackendError> {
        let key = |suffix| group_key(group_id, suffix);
        let mut connection = self.redis.manager();
        let cleaned: i64 = self.checked(
            CLEANUP
                .key(key(".c"))
                .key(key(".j"))
                .key(key(".t"))
                .key(key(".s"))
                .key(key(".d"))
                .arg(claim)
                .arg(DONE_SECONDS)
                .invoke_async(&mut connection)
                .await,
        )?;
        Ok(cleaned == 1)
    }

    /// After a failed header: forgets the size, so a late duplicate of a
    /// header task cannot fail the chord a second time (Celery does the same).
    pub async fn forget_chord_size(&self, group_id: &str) -> Result<(), BackendError> {
        let mut connection = self.redis.manager();
        self.checked(
            redis::cmd("DEL")
                .arg(group_key(group_id, ".s"))
                .query_async::<()>(&mut connection)
                .await,
        )
    }
}

//! Celery's canvas — `link`, `link_error`, `chain`, `group` and `chord` —
//! so that a workflow a Python app sends runs across Rust and Python
//! workers alike, and a Rust producer can send one to either.
//!
//! The wire facts are in `../shared/celery-canvas-control-events.md` §1
//! (captured from Celery 5.7). A canvas travels inside task messages: the
//! body's third element (`embed`) holds `callbacks`, `errbacks`, `chain` and
//! `chord` as [`Signature`]s; `group` and `group_index` are headers. Whoever
//! finishes a task sets off what comes next — there is no coordinator.
//!
//! | module | job |
//! |---|---|
//! | [`signature`] | a signature's JSON, and what shape it stands for |
//! | [`expression`] | `add(2, 2) \| mul(8)`: a canvas written on one line |
//! | [`apply()`] | a signature → the messages that start it; ids frozen first (pure) |
//! | [`follow_up`] | a finished task → what it must set off (pure) |
//! | [`replace()`] | `self.replace(signature)` → the messages that take the task's place (pure) |
//!
//! The I/O — publishing, the chord counter in Redis — is the worker's
//! (`worker/canvas.rs`) and the result backend's (`backend/chord.rs`; the
//! header's results, and joining them, are `backend::header`).

pub mod apply;
pub mod expression;
pub mod follow_up;
pub mod replace;
pub mod signature;

pub use apply::{Awaited, Lineage, Outgoing, Plan, apply, freeze};
pub use replace::replace;
pub use signature::{CanvasError, Shape, Signature};

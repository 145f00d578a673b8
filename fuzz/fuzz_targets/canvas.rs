//! Fuzz target: the canvas a task message carries, and the one-line canvas
//! expressions of `send --canvas`. A body `[args, kwargs, embed]` is decoded
//! and what the worker would set off is planned from it — after a success
//! (`follow_up::after_success`: callbacks, the chain's next step, a chord
//! started from a chain) and after a failure (`after_failure`: the doomed
//! chain, the errbacks); the same bytes, read as text, are parsed as an
//! expression, frozen and applied.
//!
//! Properties: nothing panics, however deep or malformed the signatures;
//! every message planned writes a body that decodes back to itself; a
//! frozen canvas sends only ids it said it would, for what it waits on.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/canvas.rs");

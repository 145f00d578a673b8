//! Fuzz target: a beat schedule file (`beat::schedule::parse`), and what beat
//! does with one that parses: the next slot of every entry, the message it
//! would send, and a scheduler tick from a state with far-off times in it.
//!
//! Properties: nothing panics; a next slot is after the time asked about.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/schedule.rs");

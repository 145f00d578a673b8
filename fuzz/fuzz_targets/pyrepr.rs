//! Fuzz target: Python's `repr()` and `json.dumps` as we write them
//! (`protocol::pyrepr`, `protocol::json`), for any JSON value.
//!
//! Properties: nothing panics; a string's repr is a Python string literal
//! that reads back as the same string; our `json.dumps` output parses back
//! to the same value; `abbreviate` cuts on a character boundary and never
//! grows a short text.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/pyrepr.rs");

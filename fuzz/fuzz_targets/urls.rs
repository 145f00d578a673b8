//! Fuzz target: the URLs users give (`--broker`, `--amqp-url`,
//! `--result-backend`): parsing them (`shared::amqp::parse_amqp_url`, the
//! redis crate's, `Transport::of`) and showing them (`shared::Redacted`).
//!
//! Properties: nothing panics; a password put into a URL, in its user info
//! or as a `password=` parameter, alone or in a `;` list, never shows in its
//! redacted form (unless the rest of the URL happens to contain the same
//! text).

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/urls.rs");

//! Fuzz target: a cron expression (`beat::cron::Cron::parse`) and its next
//! run after any instant, in any time zone.
//!
//! Properties: nothing panics; a next run is strictly after the instant
//! asked about; parsing the expression as written again gives the same
//! expression.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/cron.rs");

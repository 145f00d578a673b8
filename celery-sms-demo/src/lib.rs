//! (crate docs to come)

pub mod sms;

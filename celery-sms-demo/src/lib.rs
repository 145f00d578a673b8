//! (crate docs to come)

pub mod backend;
pub mod broker;
pub mod protocol;
pub mod sms;
pub mod tasks;
pub mod worker;

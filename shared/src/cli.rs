//! How every binary ends: exit code 0, or one line on stderr and exit code 1.
//!
//! Returning `anyhow::Result` from `main` prints a multi-line `Debug` dump.
//! A user who typed a wrong password wants one line saying so, not that.

use std::{fmt::Display, process::ExitCode};

/// Prints `error: <cause: cause: …>` for a failure and picks the exit code.
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            crate::logging::flush(); // the error comes after what was logged
            // `{:#}` prints an anyhow chain on one line, "outer: inner".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

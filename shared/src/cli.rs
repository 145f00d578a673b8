//! How every binary ends: exit code 0, or one line on stderr and exit code 1.
//!
//! Returning `anyhow::Result` from `main` prints a multi-line `Debug` dump.
//! A user who typed a wrong password wants one line saying so, not that.

use std::{
    fmt::Display,
    io::{self, Write},
    process::ExitCode,
};

use thiserror::Error;

/// Prints `error: <cause: cause: …>` for a failure and picks the exit code.
pub fn exit_code<E: AsRef<dyn std::error::Error>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            crate::logging::flush(); // the error comes after what was logged
            // If stderr itself is closed there is nowhere left to say it.
            let _ = writeln!(io::stderr(), "error: {}", one_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

pub use amqp_connect::report::one_line;

/// Standard output went away (`producer | head -0`, a closed terminal).
#[derive(Debug, Error)]
#[error("cannot write to standard output: {0}")]
pub struct StdoutError(#[from] io::Error);

/// `println!`, except that a closed standard output is an error to report,
/// not a panic: `println!` panics when the write fails.
pub fn print_line(line: impl Display) -> Result<(), StdoutError> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("RabbitMQ error while connecting: {source}")]
    struct Outer {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("FRAME-ERROR")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("sending tasks")]
    struct Context {
        source: Inner,
    }

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(
            one_line(&Outer { source: Inner }),
            "RabbitMQ error while connecting: FRAME-ERROR"
        );
        assert_eq!(
            one_line(&Context { source: Inner }),
            "sending tasks: FRAME-ERROR"
        );
    }
}

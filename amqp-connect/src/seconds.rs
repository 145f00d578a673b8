//! Seconds on the command line (`--connect-timeout 30`, `--countdown 0.5`),
//! parsed once into a `Duration` that is already known to be usable.
//!
//! Every duration a user types ends up in `Duration::from_secs_f64`, in a
//! timer, or in chrono's date arithmetic, and all of those panic (or
//! overflow) somewhere past a few hundred billion years: `--countdown 1e13`
//! used to crash `send` with a backtrace. Checking at each use would mean
//! checking in a dozen places; checking here means a flag's value is either
//! in its range or the command stops with clap's one-line error, which names
//! the flag and the range:
//!
//! ```text
//! error: invalid value '1e20' for '--connect-timeout <SECONDS>': expected a number of seconds from 0 to 86400
//! ```

use std::time::Duration;

/// A day, in seconds: the range of most timeouts.
pub const DAY: f64 = 86_400.0;
/// Ten years, in seconds: as far ahead as a task may be scheduled. Python's
/// `datetime` stops at the year 9999, so an `eta` must stay well inside it.
pub const TEN_YEARS: f64 = 3_650.0 * DAY;

/// A range of seconds a flag accepts; also its `clap` value parser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seconds {
    min: f64,
    max: f64,
}

impl Seconds {
    /// From `min` to `max` seconds, both included.
    pub const fn between(min: f64, max: f64) -> Self {
        Self { min, max }
    }

    /// `--connect-timeout`: from 0 (try once) to a day.
    pub const CONNECT_TIMEOUT: Seconds = Seconds::between(0.0, DAY);

    /// Parses `text` (`30`, `0.5`, `1e3`) and checks it against the range.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        match text.trim().parse::<f64>() {
            Ok(seconds) => self.check(seconds),
            Err(_) => Err(self.expected()),
        }
    }

    /// Checks a number of seconds read some other way (a TOML file).
    pub fn check(&self, seconds: f64) -> Result<Duration, String> {
        // Written so that NaN fails too: every comparison with NaN is false.
        if seconds >= self.min && seconds <= self.max {
            Duration::try_from_secs_f64(seconds).map_err(|_| self.expected())
        } else {
            Err(self.expected())
        }
    }

    fn expected(&self) -> String {
        format!(
            "expected a number of seconds from {} to {}",
            self.min, self.max
        )
    }
}

/// With the `clap` feature, a range is a flag's value parser:
/// `#[arg(value_parser = Seconds::CONNECT_TIMEOUT)]`.
#[cfg(feature = "clap")]
impl clap::builder::TypedValueParser for Seconds {
    type Value = Duration;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Duration, clap::Error> {
        // clap's own function parser formats the error (flag, value, reason)
        // exactly like every other invalid value.
        let range = *self;
        (move |text: &str| range.parse(text)).parse_ref(command, arg, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_numbers_in_range() {
        let range = Seconds::CONNECT_TIMEOUT;
        assert_eq!(range.parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(range.parse(" 0.5 "), Ok(Duration::from_millis(500)));
        assert_eq!(range.parse("0"), Ok(Duration::ZERO));
        assert_eq!(range.parse("86400"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn refuses_what_would_overflow_or_makes_no_sense() {
        let range = Seconds::CONNECT_TIMEOUT;
        for text in [
            "1e20", "1e300", "inf", "-inf", "NaN", "-1", "86400.5", "", "thirty", "0x10",
        ] {
            let error = range.parse(text).unwrap_err();
            assert!(error.contains("from 0 to 86400"), "{text}: {error}");
        }
    }

    #[cfg(feature = "clap")]
    #[test]
    fn clap_names_the_flag_and_the_range() {
        use clap::{Arg, Command};
        let command = Command::new("demo").arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("SECONDS")
                .value_parser(Seconds::between(0.5, 60.0)),
        );
        let error = command
            .try_get_matches_from(["demo", "--timeout", "1e20"])
            .unwrap_err()
            .to_string();
        let first = error.lines().next().unwrap_or_default();
        assert!(
            first.contains("'1e20'")
                && first.contains("--timeout <SECONDS>")
                && first.contains("from 0.5 to 60"),
            "{error}"
        );
    }
}

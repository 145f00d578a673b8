//! The flag sweep: every option of a command, and every environment variable
//! it reads, fed a list of hostile values, to prove that none of them panics.
//!
//! The flags are read from the command's own `--help`, so a flag added later
//! is swept without anyone remembering to add it here. Each run points the
//! command at a broker that is not there (the `base` arguments, e.g.
//! `--broker redis://127.0.0.1:1/0 --connect-timeout 0.2`), so a value that
//! is accepted ends in a quick connection error instead of real work; a run
//! still going after a few seconds is stopped, and counts as fine.

use std::{
    ffi::OsString,
    os::unix::ffi::OsStringExt,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use tokio::{io::AsyncReadExt, process::Command, sync::Semaphore, task::JoinSet};

/// Runs at once: the sweep's processes mostly wait on a refused connect.
const AT_ONCE: usize = 8;

/// A run still going after this long accepted its value: it is stopped.
const ACCEPTED_AFTER: Duration = Duration::from_secs(5);

/// Values that broke, or could break, something: numbers past every range,
/// NaN and infinities, empty and huge text, odd URLs and times.
pub fn hostile_values() -> Vec<OsString> {
    let mut values: Vec<OsString> = [
        "",
        " ",
        "0",
        "-1",
        "-0",
        "1e20",
        "1e300",
        "-1e300",
        "NaN",
        "inf",
        "-inf",
        "0.0000001",
        "18446744073709551616",
        "9223372036854775807",
        "4294967296",
        "65536",
        "99999999999999999999999",
        "0x10",
        "1_000",
        "💥",
        "a,,b",
        ",",
        "redis://",
        "amqp://",
        "redis://:pw@127.0.0.1:1/99999",
        "amqp://u:p@[::1",
        "redis://127.0.0.1:99999/0",
        "http://x",
        "%",
        "../../../etc/passwd",
        "2026-13-45T99:99:99",
        "9999-12-31T23:59:59",
        "+275760-09-13T00:00:00Z",
        "-5",
        "--",
        "\t",
        "\n",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    values.push(OsString::from("x".repeat(100_000)));
    values.push(OsString::from_vec(b"\xff\xfe not utf-8".to_vec()));
    values
}

/// One run: the arguments, and the variables to set.
type Run = (Vec<OsString>, Vec<(String, OsString)>);

/// One option as `--help` lists it.
#[derive(Debug, Clone)]
struct Flag {
    long: String,
    takes_value: bool,
    env: Option<String>,
}

/// Reads the options (and their `[env: …]`) from `binary command… --help`.
fn flags_of(binary: &str, command: &[&str]) -> Vec<Flag> {
    let output = std::process::Command::new(binary)
        .args(command)
        .arg("--help")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {binary} --help: {error}")); // ok-panic: test support only
    let help = String::from_utf8_lossy(&output.stdout);
    let mut flags: Vec<Flag> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        // Option lines are indented at most 6 columns (descriptions 10):
        // "  -c, --concurrency <N>" or "      --queue <QUEUE>".
        let option = match trimmed.as_bytes() {
            [b'-', short, b',', b' ', ..] if *short != b'-' => &trimmed[4..],
            _ => trimmed,
        };
        if line.len() - trimmed.len() <= 6
            && let Some(option) = option.strip_prefix("--")
        {
            let long: String = option
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !long.is_empty() && long != "help" && long != "version" {
                flags.push(Flag {
                    takes_value: option[long.len()..].trim_start().starts_with('<'),
                    long,
                    env: None,
                });
            }
        }
        if let Some(start) = line.find("[env: ") {
            let name: String = line[start + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(flag) = flags.last_mut() {
                flag.env = Some(name);
            }
        }
    }
    // A sweep that found nothing to sweep would pass without testing anything.
    assert!(
        help.contains("Usage:"),
        "no help from {binary} {command:?}:\n{help}"
    );
    flags
}

/// How one run went wrong, if it did. Waits for the process itself (no
/// polling), and reads its stderr meanwhile, even from a run that is
/// stopped: a panic in a spawned task leaves the process running.
async fn problem(binary: &str, args: &[OsString], envs: &[(String, OsString)]) -> Option<String> {
    let mut child = Command::new(binary)
        .args(args)
        .envs(envs.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut pipe = child.stderr.take()?;
    let reading = tokio::spawn(async move {
        let mut stderr = Vec::new();
        let _ = pipe.read_to_end(&mut stderr).await;
        String::from_utf8_lossy(&stderr).into_owned()
    });
    let status: Option<ExitStatus> = match tokio::time::timeout(ACCEPTED_AFTER, child.wait()).await
    {
        Ok(status) => status.ok(),
        Err(_) => {
            // Still running with this value: accepted, and no panic so far.
            let _ = child.kill().await;
            None
        }
    };
    let stderr = reading.await.unwrap_or_default();
    let shown = |args: &[OsString]| {
        args.iter()
            .map(|arg| {
                let text = arg.to_string_lossy();
                crate::redact::Redacted(&text)
                    .to_string()
                    .chars()
                    .take(80)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let envs: Vec<String> = envs
        .iter()
        .map(|(name, value)| format!("{name}={}", shown(std::slice::from_ref(value))))
        .collect();
    let run = format!("{binary} {} (env {envs:?})", shown(args));
    let panicked = stderr.contains("panicked at") || stderr.contains("RUST_BACKTRACE");
    match status {
        _ if panicked => Some(format!("{run}: panicked:\n{stderr}")),
        Some(status) if status.code() == Some(101) || status.code().is_none() => {
            Some(format!("{run}: ended with {status}:\n{stderr}"))
        }
        _ => None,
    }
}

/// One command to sweep, and how to keep each run short.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sweep<'a> {
    pub binary: &'a str,
    /// The subcommand (`["worker"]`), or nothing.
    pub command: &'a [&'a str],
    /// `(flag, value)` pairs that point the command at nothing (dead broker,
    /// short timeout); a swept flag replaces its own pair.
    pub base: &'a [(&'a str, &'a str)],
    /// Variables set for every run (for settings that are not flags of
    /// the subcommand itself).
    pub base_env: &'a [(&'a str, &'a str)],
    /// The command's positional arguments.
    pub positional: &'a [&'a str],
    /// Variables the command reads that are no flag's (`SMS_GATEWAY`,
    /// `RUST_LOG`): swept too, one at a time.
    pub variables: &'a [&'a str],
    /// Sweep only `variables` (another sweep does the flags).
    pub only_variables: bool,
}

impl Sweep<'_> {
    /// Runs every option and variable with every hostile value. Returns each
    /// run that panicked or died, for the test to print.
    pub fn run(&self) -> Vec<String> {
        let runs = self.runs();
        run_all(self.binary, runs, self.base_env)
    }

    fn args_with(&self, swept: Option<(&str, &OsString)>) -> Vec<OsString> {
        let mut args: Vec<OsString> = self.command.iter().map(OsString::from).collect();
        for (flag, value) in self.base {
            if swept.is_none_or(|(long, _)| long != flag.trim_start_matches('-')) {
                args.push(OsString::from(format!("{flag}={value}")));
            }
        }
        if let Some((long, value)) = swept {
            let mut arg = OsString::from(format!("--{long}="));
            arg.push(value);
            args.push(arg);
        }
        args.extend(self.positional.iter().map(OsString::from));
        args
    }

    fn runs(&self) -> Vec<Run> {
        let values = hostile_values();
        let mut runs = Vec::new();
        let flags = if self.only_variables {
            Vec::new()
        } else {
            flags_of(self.binary, self.command)
        };
        for flag in flags {
            if flag.takes_value {
                for value in &values {
                    runs.push((self.args_with(Some((&flag.long, value))), Vec::new()));
                }
            } else {
                let mut args = self.args_with(None);
                args.push(OsString::from(format!("--{}", flag.long)));
                runs.push((args, Vec::new()));
            }
            if let Some(env) = &flag.env {
                // The variable only counts when the flag itself is not given.
                let given = format!("--{}=", flag.long);
                let mut args = self.args_with(None);
                args.retain(|arg| !arg.to_string_lossy().starts_with(&given));
                for value in &values {
                    runs.push((args.clone(), vec![(env.clone(), value.clone())]));
                }
            }
        }
        for name in self.variables {
            for value in &values {
                runs.push((
                    self.args_with(None),
                    vec![((*name).to_owned(), value.clone())],
                ));
            }
        }
        let count = self.positional.len();
        if count > 0 {
            // Every positional argument at once.
            for value in &values {
                let mut args = self.args_with(None);
                args.truncate(args.len() - count);
                args.extend(std::iter::repeat_n(value.clone(), count));
                runs.push((args, Vec::new()));
            }
        }
        runs
    }
}

/// Runs `runs`, [`AT_ONCE`] at a time, and collects the problems.
fn run_all(binary: &str, runs: Vec<Run>, base_env: &[(&str, &str)]) -> Vec<String> {
    let base_env: Vec<(String, OsString)> = base_env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("a runtime for the sweep: {error}")); // ok-panic: test support only
    runtime.block_on(async {
        let places = Arc::new(Semaphore::new(AT_ONCE));
        let mut running = JoinSet::new();
        for (args, swept) in runs {
            // The swept variable wins over a base one of the same name.
            let mut envs: Vec<(String, OsString)> = base_env
                .iter()
                .filter(|(name, _)| swept.iter().all(|(other, _)| other != name))
                .cloned()
                .collect();
            envs.extend(swept);
            let place = places.clone().acquire_owned().await;
            let binary = binary.to_owned();
            running.spawn(async move {
                let _place = place;
                problem(&binary, &args, &envs).await
            });
        }
        let mut problems = Vec::new();
        while let Some(done) = running.join_next().await {
            if let Ok(Some(found)) = done {
                problems.push(found);
            }
        }
        problems
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in command whose `--count` panics on a huge number, the way
    /// `send --countdown 1e13` once did: the sweep must find it.
    #[test]
    fn finds_a_flag_value_that_panics() {
        let dir = std::env::temp_dir().join(crate::testing::unique_name("sweep"));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("fragile");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             case \"$*\" in\n\
             *--help*) printf 'Usage: fragile [OPTIONS]\\n\\nOptions:\\n      --count <N>\\n          How many\\n          [env: FRAGILE_COUNT=]\\n      --quiet\\n' ;;\n\
             *--count=1e300*) echo \"thread 'main' panicked at src/main.rs:1:1\" >&2; exit 101 ;;\n\
             esac\n\
             [ \"$FRAGILE_COUNT\" = NaN ] && exit 101\n\
             exit 0\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let problems = Sweep {
            binary: script.to_str().unwrap(),
            ..Sweep::default()
        }
        .run();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("--count=1e300") && p.contains("panicked"))
        );
        assert!(problems.iter().any(|p| p.contains("FRAGILE_COUNT=NaN")));
    }
}

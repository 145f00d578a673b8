//! Where a setting's value comes from, and reading it there once.
//!
//! A setting has one name, Celery's (`worker_concurrency`), and three places
//! it may be written, tried in this order:
//!
//! 1. the environment, as `CELERY_<NAME>` (`CELERY_WORKER_CONCURRENCY=8`),
//!    the way Django's `CELERY_` namespace spells them; structured values
//!    (`task_routes`, `broker_transport_options`) as JSON;
//! 2. a TOML configuration file with the names in lower case
//!    (`worker_concurrency = 8`, `[broker_transport_options]`);
//! 3. the application's own defaults, set in code (Celery's `celeryconfig.py`).
//!
//! Command-line flags come before all three; the command line applies them
//! itself, on the typed values (see `celery-cli`).
//!
//! Every value keeps its [`Origin`], so an error says where to fix it:
//! `setting worker_concurrency (celeryconfig.toml:3): expected …`.

use std::{collections::BTreeMap, fmt, ops::Range, path::Path, path::PathBuf};

use serde_json::{Map, Value};
use toml::Spanned;

use super::{ConfigError, SUPPORTED, names::CELERY_SETTINGS};

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// An environment variable.
    Env(String),
    /// A line of a configuration file.
    File { path: PathBuf, line: usize },
    /// The application's defaults, in its code.
    App,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(variable) => write!(f, "the variable {variable}"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::App => f.write_str("the app's defaults"),
        }
    }
}

/// A value as written: text from the environment, or a typed value from the
/// file or the app (TOML and JSON values alike, as JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Text(String),
    Value(Value),
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The places settings are read from. Build it, then hand it to
/// [`Settings::load`](super::Settings::load).
pub struct Sources {
    env: Box<EnvLookup>,
    file: Option<ConfigFile>,
    app: BTreeMap<String, Value>,
    /// Celery settings the file sets that this worker does not act on.
    unsupported: Vec<String>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("file", &self.file.as_ref().map(|file| &file.path))
            .field("app", &self.app.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ConfigFile {
    path: PathBuf,
    values: BTreeMap<String, (Value, usize)>,
}

impl Sources {
    /// This process's environment, no file, no app defaults.
    pub fn from_env() -> Sources {
        // A variable that is not UTF-8 is taken as unset: no setting's
        // value can be anything but text.
        Sources::with_env(|name| std::env::var(name).ok())
    }

    /// The environment replaced by `lookup`: for tests, which run in
    /// parallel and must not change the process's environment.
    pub fn with_env(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Sources {
        Sources {
            env: Box::new(lookup),
            file: None,
            app: BTreeMap::new(),
            unsupported: Vec::new(),
        }
    }

    /// The application's default for a setting (what `celeryconfig.py`
    /// would say): below the file and the environment. A name that is not
    /// a setting is an error at [`Settings::load`](super::Settings::load).
    pub fn app_default(mut self, name: &str, value: impl Into<Value>) -> Sources {
        self.app.insert(name.to_owned(), value.into());
        self
    }

    /// Reads the TOML configuration file at `path`.
    pub fn file(self, path: &Path) -> Result<Sources, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.file_text(path, &text)
    }

    /// A configuration file's `text`, as if read from `path`.
    pub fn file_text(mut self, path: &Path, text: &str) -> Result<Sources, ConfigError> {
        let at = |span: Option<Range<usize>>| line_of(text, span.map_or(0, |span| span.start));
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|error| ConfigError::NotToml {
                path: path.to_owned(),
                line: at(error.span()),
                problem: error.message().trim().replace('\n', " "),
            })?;
        let mut values = BTreeMap::new();
        for (name, value) in table {
            let line = at(Some(name.span()));
            let name = name.into_inner();
            let origin = Origin::File {
                path: path.to_owned(),
                line,
            };
            match known(&name) {
                Known::Supported => {}
                Known::Celerys => {
                    self.unsupported.push(format!(
                        "{origin}: Celery's setting {name} is not supported by this worker yet; it is ignored"
                    ));
                    continue;
                }
                Known::No => return Err(unknown(&name, origin)),
            }
            // TOML has no null and no value JSON lacks: this cannot fail.
            let value = serde_json::to_value(value.into_inner()).unwrap_or(Value::Null);
            values.insert(name, (value, line));
        }
        self.file = Some(ConfigFile {
            path: path.to_owned(),
            values,
        });
        Ok(self)
    }

    /// The app's defaults must name settings too; checked when loading.
    pub(crate) fn check_app_defaults(&self) -> Result<(), ConfigError> {
        for name in self.app.keys() {
            match known(name) {
                Known::Supported => {}
                Known::Celerys => {
                    return Err(ConfigError::Invalid {
                        name: name.clone(),
                        origin: Origin::App,
                        problem: "Celery has this setting, but this worker does not support it yet"
                            .to_owned(),
                    });
                }
                Known::No => return Err(unknown(name, Origin::App)),
            }
        }
        Ok(())
    }

    /// What the file set that this worker ignores, one line each.
    pub(crate) fn unsupported(&self) -> &[String] {
        &self.unsupported
    }

    /// The value of `name` from the first place that has it.
    pub(crate) fn raw(&self, name: &str) -> Option<(Raw, Origin)> {
        let variable = env_name(name);
        if let Some(text) = (self.env)(&variable) {
            return Some((Raw::Text(text), Origin::Env(variable)));
        }
        self.raw_below_env(name)
    }

    /// An environment variable of our own that is not `CELERY_<NAME>` of a
    /// setting (kept for the names earlier releases read).
    pub(crate) fn variable(&self, variable: &str) -> Option<(Raw, Origin)> {
        (self.env)(variable).map(|text| (Raw::Text(text), Origin::Env(variable.to_owned())))
    }

    fn raw_below_env(&self, name: &str) -> Option<(Raw, Origin)> {
        if let Some(file) = &self.file
            && let Some((value, line)) = file.values.get(name)
        {
            let origin = Origin::File {
                path: file.path.clone(),
                line: *line,
            };
            return Some((Raw::Value(value.clone()), origin));
        }
        self.app
            .get(name)
            .map(|value| (Raw::Value(value.clone()), Origin::App))
    }
}

/// `worker_concurrency` → `CELERY_WORKER_CONCURRENCY`.
pub fn env_name(setting: &str) -> String {
    format!("CELERY_{}", setting.to_ascii_uppercase())
}

enum Known {
    Supported,
    Celerys,
    No,
}

fn known(name: &str) -> Known {
    if SUPPORTED.contains(&name) {
        Known::Supported
    } else if CELERY_SETTINGS.contains(&name) {
        Known::Celerys
    } else {
        Known::No
    }
}

/// An unknown name, with the closest known one if there is a close one.
fn unknown(name: &str, origin: Origin) -> ConfigError {
    let closest = SUPPORTED
        .iter()
        .chain(CELERY_SETTINGS)
        .map(|known| (strsim::jaro_winkler(name, known), *known))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known.to_owned());
    ConfigError::Unknown {
        name: name.to_owned(),
        origin,
        closest,
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&byte| byte == b'\n').count() + 1
}

/// A structured value from the environment: JSON text.
pub(crate) fn json_from_text(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON ({error})"))
}

/// A JSON object, or why not.
pub(crate) fn as_object(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("expected a table (a JSON object), got {other}")),
    }
}

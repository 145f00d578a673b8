//! Broker URLs that are safe to print.
//!
//! Every URL in this project can carry a password (`amqp://guest:guest@…`,
//! `redis://:secret@…`, `redis://user:secret@…`, `…?password=secret`).
//! Anything that reaches a log line, an error message, a banner or `--help`
//! goes through [`Redacted`], which shows `amqp://guest:**@host` the way
//! Celery's banner does.

use std::{fmt, ops::Range};

/// Query parameters that carry a password (redis-py's and kombu's names).
const SECRET_PARAMETERS: [&str; 2] = ["password", "pass"];

/// A URL (or a `;`-separated list of them, as Celery's `broker_url` allows)
/// whose `Display` hides every password.
///
/// It works on the raw text rather than a parsed URL on purpose: a URL we
/// could not parse is exactly the one an error message needs to show, and it
/// must be masked too. So where the text is ambiguous it masks too much
/// rather than too little: a password with an unescaped `/`, `?`, `#` or `@`
/// in it is hidden all the same.
#[derive(Clone, Copy, Debug)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, url) in split_url_list(self.0).enumerate() {
            if index > 0 {
                f.write_str(";")?;
            }
            write_one(f, url)?;
        }
        Ok(())
    }
}

/// A URL that may carry a password, as a setting holds it: the text itself
/// for the code that connects ([`SecretUrl::expose`], or `&str` through
/// `Deref`), and only the [`Redacted`] form for `Debug` and `Display`. So a
/// config that holds one can derive `Debug` and still be logged whole.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL with its password: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown: `amqp://guest:**@host`.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(&self.0)
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.redacted().fmt(f)
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(url.to_owned())
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl::from(url))
    }
}

/// The URLs of a `;`-separated list, as Celery's `broker_url` takes them
/// (`amqp://h1//;amqp://h2//`); a single URL is a list of one.
pub fn split_url_list(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        let text = rest?;
        match next_url_start(text) {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                Some(&text[..end])
            }
            None => rest.take(),
        }
    })
}

/// The `;` that starts the next URL of a list (`amqp://h1//;amqp://h2//`):
/// one followed by a scheme, so that a `;` inside a password is not taken
/// for a separator.
fn next_url_start(text: &str) -> Option<usize> {
    text.match_indices(';').map(|(at, _)| at).find(|&at| {
        let next = &text[at + 1..];
        next.find("://").is_some_and(|colon| {
            colon > 0
                && next[..colon]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        })
    })
}

/// Writes one URL with its user-info password and password parameters masked.
///
/// Both are found on the raw text, and everything either reading calls a
/// password is hidden: in a URL that only parses one way, they agree; in one
/// that could be read two ways (a `?` or `@` inside a password), neither
/// reading's password shows.
fn write_one(f: &mut fmt::Formatter<'_>, url: &str) -> fmt::Result {
    let mut hidden: Vec<Range<usize>> = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let start = scheme_end + 3;
        let rest = &url[start..];
        // The user info ends at the last '@' (a password may itself contain
        // '@'), and its password starts after the first ':'. A password with
        // an unescaped '/', '?' or '#' would end a strict reading of the
        // authority early, so the last '@' of the whole URL is taken: a
        // rare '@' later in the path hides a little too much.
        if let Some(at) = rest.rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            hidden.push(start + colon + 1..start + at);
        }
    }
    // `?password=…` / `&pass=…`, in any case, up to the next parameter.
    let lower = url.to_ascii_lowercase();
    for name in SECRET_PARAMETERS {
        let key = format!("{name}=");
        for (at, _) in lower.match_indices(&key) {
            if at > 0 && matches!(url.as_bytes()[at - 1], b'?' | b'&') {
                let value = at + key.len();
                let end = url[value..].find('&').map_or(url.len(), |end| value + end);
                hidden.push(value..end);
            }
        }
    }
    // Overlapping readings hide one span.
    hidden.sort_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(hidden.len());
    for range in hidden {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    let mut written = 0;
    for range in merged {
        f.write_str(&url[written..range.start])?;
        f.write_str("**")?;
        written = range.end;
    }
    f.write_str(&url[written..])
}

#[cfg(test)]
mod tests {
    use super::{Redacted, SecretUrl};

    fn show(url: &str) -> String {
        Redacted(url).to_string()
    }

    #[test]
    fn hides_the_password_and_keeps_the_rest() {
        for (url, shown) in [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:**@127.0.0.1:5672/%2f",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/7",
                "redis://:**@127.0.0.1:6379/7",
            ),
            (
                "redis://user:s3cret@127.0.0.1:6379/7",
                "redis://user:**@127.0.0.1:6379/7",
            ),
            (
                "rediss://default:s3cret@cache.example:6380/0?ssl_cert_reqs=none",
                "rediss://default:**@cache.example:6380/0?ssl_cert_reqs=none",
            ),
            (
                "amqps://u:p@ss@host?heartbeat=10",
                "amqps://u:**@host?heartbeat=10",
            ),
        ] {
            assert_eq!(show(url), shown);
        }
    }

    #[test]
    fn hides_passwords_in_query_parameters() {
        assert_eq!(
            show("redis+unix:///tmp/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/redis.sock?db=1&pass=**"
        );
        assert_eq!(
            show("redis://127.0.0.1:6379/7?password=s3cret&x=1"),
            "redis://127.0.0.1:6379/7?password=**&x=1"
        );
    }

    #[test]
    fn hides_every_password_of_a_list() {
        assert_eq!(
            show("amqp://a:one@h1:5672//;amqp://b:two@h2:5672//"),
            "amqp://a:**@h1:5672//;amqp://b:**@h2:5672//"
        );
        assert_eq!(
            show("sentinel://:pw@h1:26379;sentinel://:pw@h2:26380/7"),
            "sentinel://:**@h1:26379;sentinel://:**@h2:26380/7"
        );
    }

    #[test]
    fn masks_passwords_with_unescaped_separators() {
        // A generated password with '/', ';' or '#' in it, pasted as it is.
        for (url, shown) in [
            ("amqp://app:Ab/cD+e@host//", "amqp://app:**@host//"),
            ("amqp://app:Ab;cD@host//", "amqp://app:**@host//"),
            ("redis://:Ab#cD?x@host:6379/0", "redis://:**@host:6379/0"),
            // Found by the `urls` fuzz target: '@' and '/' in one password,
            // and a query password that looks like user info.
            ("sentinel://w:@  A*h/@/", "sentinel://w:**@/"),
            ("amqps:///?password=;;;/:**@/;;", "amqps:///?password=**"),
        ] {
            assert_eq!(show(url), shown);
        }
    }

    #[test]
    fn a_secret_url_is_redacted_under_debug_and_display() {
        let url = SecretUrl::from("amqp://app:s3cret@rabbit:5672/%2f");
        assert_eq!(format!("{url}"), "amqp://app:**@rabbit:5672/%2f");
        assert_eq!(format!("{url:?}"), "\"amqp://app:**@rabbit:5672/%2f\"");
        assert_eq!(url.expose(), "amqp://app:s3cret@rabbit:5672/%2f");
    }

    #[test]
    fn leaves_urls_without_a_password_alone() {
        for url in [
            "redis://127.0.0.1:6379/7",
            "amqp://guest@host/%2f",
            "amqp://host/with@in-path",
            "not a url",
            "amqp://h1//;amqp://h2//",
        ] {
            assert_eq!(show(url), url);
        }
    }
}

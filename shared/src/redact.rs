//! Broker URLs that are safe to print.
//!
//! Every URL in this project can carry a password (`amqp://guest:guest@…`,
//! `redis://:secret@…`). Anything that reaches a log line, an error message or
//! a banner goes through [`Redacted`], which shows `amqp://guest:**@host` the
//! way Celery's banner does.

use std::fmt;

/// A URL wrapper whose `Display` hides the password.
///
/// It works on the raw text rather than a parsed URL on purpose: a URL we
/// could not parse is exactly the one an error message needs to show, and it
/// must be masked too.
#[derive(Clone, Copy, Debug)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some(scheme_end) = url.find("://") else {
            return f.write_str(url);
        };
        let authority_start = scheme_end + 3;
        let rest = &url[authority_start..];
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        // The last '@' ends the user info: a password may itself contain '@'.
        let Some(at) = authority.rfind('@') else {
            return f.write_str(url);
        };
        let userinfo = &authority[..at];
        let Some(colon) = userinfo.find(':') else {
            return f.write_str(url);
        };
        write!(
            f,
            "{}{}:**{}",
            &url[..authority_start],
            &userinfo[..colon],
            &url[authority_start + at..]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Redacted;

    fn show(url: &str) -> String {
        Redacted(url).to_string()
    }

    #[test]
    fn hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            show("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:**@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            show("redis://:s3cret@127.0.0.1:6379/7"),
            "redis://:**@127.0.0.1:6379/7"
        );
        assert_eq!(
            show("amqps://u:p@ss@host?heartbeat=10"),
            "amqps://u:**@host?heartbeat=10"
        );
    }

    #[test]
    fn leaves_urls_without_a_password_alone() {
        for url in [
            "redis://127.0.0.1:6379/7",
            "amqp://guest@host/%2f",
            "amqp://host/with@in-path",
            "not a url",
        ] {
            assert_eq!(show(url), url);
        }
    }
}

// The logic of the fuzz target `urls` (see `fuzz_targets/urls.rs` for what it
// checks): included there, under libFuzzer, and by the replay test
// (`celery-sms-demo/tests/it/fuzz_replay.rs`), which runs it on every seed.

use arbitrary::Arbitrary;
use celery_core::broker::Transport;
use shared::{Redacted, amqp::parse_amqp_url};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    raw: &'a str,
    scheme: u8,
    user: &'a str,
    password: &'a str,
    host: &'a str,
    rest: &'a str,
    /// Where the password goes: the user info, or a query parameter.
    in_query: bool,
}

const SCHEMES: [&str; 5] = ["amqp", "amqps", "redis", "rediss", "sentinel"];

fuzz_target!(|input: Input<'_>| {
    // Any text at all: none of these may panic.
    let _ = parse_amqp_url(input.raw);
    let _ = redis::Client::open(input.raw);
    let _ = Transport::of(input.raw);
    let _ = Redacted(input.raw).to_string();

    // A URL with a password in it. A password holding "://" after a ';'
    // cannot be told apart from the next URL of a list, and one that is
    // part of the visible text proves nothing: both are left out.
    let password = input.password;
    if password.is_empty() || password.contains("://") || password.contains('&') {
        return;
    }
    let scheme = SCHEMES[usize::from(input.scheme) % SCHEMES.len()];
    let (user, host, rest) = (input.user, input.host, input.rest);
    if [user, host, rest]
        .iter()
        .any(|part| part.contains(['@', ':', '/', '?', '#', ';', '&', '=']))
    {
        return;
    }
    let (url, visible) = if input.in_query {
        (
            format!("{scheme}://{host}/{rest}?password={password}"),
            format!("{scheme}://{host}/{rest}?password=**"),
        )
    } else {
        (
            format!("{scheme}://{user}:{password}@{host}/{rest}"),
            format!("{scheme}://{user}:**@{host}/{rest}"),
        )
    };
    let shown = Redacted(&url).to_string();
    if !visible.contains(password) {
        assert!(!shown.contains(password), "{url} is shown as {shown}");
    }
    let list = format!("{url};{url}");
    let shown = Redacted(&list).to_string();
    if !format!("{visible};{visible}").contains(password) {
        assert!(!shown.contains(password), "{list} is shown as {shown}");
    }
});

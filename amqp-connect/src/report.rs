//! An error as one line, for a user: "outer: inner", each cause said once.
//!
//! Many errors already quote their cause in their own message (lapin's do,
//! and ours do so that `Display` alone is complete); printing the chain as
//! it stands would then say the same cause two or three times over. The
//! programs end with this line, and a Rust task's failure stores it.

/// `error` and its causes on one line, each said once.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

//! The one line format of paytool's own long-running processes (the supervisor, the agent) in
//! their logs: a UTC timestamp to the millisecond, who, what.

use std::io::Write;

pub fn line(who: &str, message: &str) {
    // A full disk must not take the process down with a panic (as eprintln! would).
    let _ = writeln!(
        std::io::stderr(),
        "{} {who}: {message}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
}

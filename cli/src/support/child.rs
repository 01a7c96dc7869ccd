//! Waiting on a child process within a bound.

use std::time::{Duration, Instant};

/// How often a bounded wait looks at the child.
const POLL_MS: u64 = 50;

/// Waits for a child at most `timeout_ms`; on timeout kills it (and reaps it) and answers
/// `None`.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout_ms: u64,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

//! The one retry policy: exponential backoff with jitter, from `backon`, for every loop that
//! waits before trying again (the outbox relay and the consumers here; in `paytool`, the
//! supervisor's restarts, the client's retries, the live feed's reconnections, the agent's
//! exports).
//!
//! Why jitter: the clients of one thing that failed (a database, a broker, a service) failed
//! together; waits without it bring them back together, all at once, on the same doubling
//! schedule. With it each wait is drawn from `[d, 2d)`, where `d` starts at the first bound
//! and doubles, so retries spread out while the shortest wait keeps its meaning.
//!
//! Both bounds are hard: no wait is shorter than `first_ms`, none is longer than `max_ms`
//! (`d` stops doubling at half of `max_ms`, and a draw is clamped at `max_ms`).

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Waits for one sequence of attempts: [`Backoff::next_delay`] after each failure,
/// [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits from `[first_ms, 2 × first_ms)` at first, doubling, never above `max_ms`.
    pub fn new(first_ms: u64, max_ms: u64) -> Self {
        assert!(first_ms > 0, "a zero wait is a busy loop");
        assert!(first_ms <= max_ms, "the first wait is within the maximum");
        let first = Duration::from_millis(first_ms);
        let max = Duration::from_millis(max_ms);
        let builder = ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(first)
            // The jitter adds up to `d` again: doubling stops at half the bound.
            .with_max_delay((max / 2).max(first))
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            first,
            max,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // Unlimited attempts: the sequence never ends; the maximum stands in if it did.
        let delay = self.delays.next().unwrap_or(self.max);
        delay.clamp(self.first, self.max)
    }

    /// After a success: the next failure waits the first bound again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_bound_and_never_pass_the_maximum() {
        let mut backoff = Backoff::new(100, 5_000);
        let waits: Vec<u128> = (0..40).map(|_| backoff.next_delay().as_millis()).collect();
        assert!((100..200).contains(&waits[0]), "{waits:?}");
        assert!((200..400).contains(&waits[1]), "{waits:?}");
        assert!((400..800).contains(&waits[2]), "{waits:?}");
        assert!(waits.iter().all(|w| (100..=5_000).contains(w)), "{waits:?}");
        // At the cap the waits are spread over [max/2, max], not all equal.
        assert!(waits[10..].iter().all(|w| *w >= 2_500), "{waits:?}");
        assert!(waits[10..].iter().any(|w| *w != waits[10]), "{waits:?}");
    }

    #[test]
    fn a_reset_starts_again_from_the_first_bound() {
        let mut backoff = Backoff::new(500, 30_000);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!((500..1_000).contains(&backoff.next_delay().as_millis()));
    }

    #[test]
    fn a_first_bound_above_half_the_maximum_still_keeps_both() {
        let mut backoff = Backoff::new(400, 500);
        for _ in 0..20 {
            let wait = backoff.next_delay().as_millis();
            assert!((400..=500).contains(&wait), "{wait}");
        }
    }
}

//! Latency figures, the one way `paytool load`, `paytool bench` (its ledger phases and its
//! end-to-end steps) and `paytool bench stream` compute them: an HdrHistogram of microseconds.
//!
//! - **Percentiles are nearest rank**: p99 is the smallest recorded value with at least 99 % of
//!   the values at or below it (HdrHistogram's `value_at_quantile` is exactly that), so every
//!   figure is a value that was measured, never an interpolation between two.
//! - **Precision: 3 significant digits.** The histogram keeps each value to within 0.1 % (its
//!   buckets are at most 1/1024 of their values wide); a figure is the middle of its value's
//!   bucket, rounded to those 3 digits: a measured 50 ms reads 50.0, not 49.984 or 50.015, the
//!   ends of its bucket. Finer digits would be noise the histogram does not have.
//! - **Milliseconds** out, microseconds in; the mean is exact (a running sum, not buckets).
//! - **Bounded**: 1 µs to [`LATENCY_MAX_US`], in memory that does not grow with the number of
//!   samples (about 190 KiB a series) — a load run no longer keeps every sample to sort.

use hdrhistogram::Histogram;
use std::time::Duration;

/// The histogram's precision, and the digits a figure is reported to.
const SIGNIFICANT_DIGITS: u8 = 3;
/// An hour: nothing measured here lasts that long (requests time out after 30 s); a longer
/// value is recorded as an hour.
pub const LATENCY_MAX_US: u64 = 3_600 * 1_000_000;

/// One series of latencies.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
    sum_us: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS)
                .expect("1 µs to an hour at 3 digits is a valid histogram"),
            sum_us: 0,
        }
    }
}

impl Latencies {
    /// A series of these microseconds.
    pub fn of_us(values_us: impl IntoIterator<Item = u64>) -> Self {
        let mut latencies = Self::default();
        for us in values_us {
            latencies.record_us(us);
        }
        latencies
    }

    pub fn record_us(&mut self, us: u64) {
        let us = us.min(LATENCY_MAX_US);
        self.histogram.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another series (one client's, one task's) to this one.
    pub fn add(&mut self, other: &Self) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The nearest-rank percentile (`fraction` 0.5 for p50, 1.0 for the maximum), in ms to 3
    /// significant digits; `None` for no values.
    pub fn percentile_ms(&self, fraction: f64) -> Option<f64> {
        (!self.is_empty()).then(|| self.figure(self.histogram.value_at_quantile(fraction)))
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.figure(self.histogram.max()))
    }

    /// A recorded value as reported: its bucket's middle, in ms to 3 significant digits.
    fn figure(&self, us: u64) -> f64 {
        to_ms(self.histogram.median_equivalent(us))
    }

    /// The exact mean, in ms.
    pub fn mean_ms(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.sum_us as f64 / self.count() as f64 / 1_000.0)
    }
}

/// Microseconds, rounded to [`SIGNIFICANT_DIGITS`], as milliseconds.
fn to_ms(us: u64) -> f64 {
    let digits = us.checked_ilog10().map_or(1, |d| d + 1);
    let step = 10u64.pow(digits.saturating_sub(u32::from(SIGNIFICANT_DIGITS)));
    let rounded = us.saturating_add(step / 2) / step * step;
    rounded as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest-rank percentile of these microseconds, in milliseconds (0 for none).
    fn percentile(us: &[u64], fraction: f64) -> f64 {
        Latencies::of_us(us.iter().copied())
            .percentile_ms(fraction)
            .unwrap_or(0.0)
    }

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        assert_eq!(percentile(&us, 0.5), 50.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&us, 1.0), 100.0);
        assert_eq!(percentile(&[7_000], 0.99), 7.0);
    }

    #[test]
    fn figures_keep_three_significant_digits_of_what_was_measured() {
        for us in [1, 999, 1_234, 50_015, 123_456, 2_000_001, 29_999_999] {
            let ms = percentile(&[us], 0.5);
            let measured = us as f64 / 1_000.0;
            assert!(
                (ms - measured).abs() <= measured * 0.006,
                "{us} µs reads {ms} ms"
            );
        }
        assert_eq!(percentile(&[123_456], 0.5), 123.0);
        assert_eq!(percentile(&[1_234], 0.5), 1.23);
        assert_eq!(percentile(&[523], 0.5), 0.523);
    }

    #[test]
    fn series_add_up_and_an_empty_one_has_no_figures() {
        let mut all = Latencies::of_us([1_000, 2_000]);
        all.add(&Latencies::of_us([3_000, 4_000]));
        assert_eq!(all.count(), 4);
        assert_eq!(all.mean_ms(), Some(2.5));
        assert_eq!(all.max_ms(), Some(4.0));
        assert_eq!(Latencies::default().percentile_ms(0.99), None);
        assert_eq!(Latencies::default().mean_ms(), None);
    }

    #[test]
    fn a_value_past_the_bound_is_recorded_as_the_bound() {
        let latencies = Latencies::of_us([u64::MAX]);
        assert_eq!(latencies.max_ms(), Some(3_600_000.0));
    }
}

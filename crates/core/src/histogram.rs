//! A histogram of durations in fixed buckets, for metrics (delivery latency here, the
//! store's sync time in `tinsel-store`).
//!
//! Fixed memory (one counter per bucket, a sum and nothing else), no allocation and no
//! clock: the caller measures the duration with the time it already has. Recording is a
//! few comparisons and two additions; a zero duration (a message delivered in the same
//! call that accepted it) takes the first bucket at once.

use std::time::Duration;

/// The upper bounds of the buckets, in seconds (Prometheus' `le`), from 50 µs to a
/// minute; a last bucket takes everything above.
pub const BUCKET_BOUNDS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The same bounds in nanoseconds, for recording without floating point.
const BOUNDS_NS: [u64; 19] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// Durations counted by bucket, with their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative): `counts[i]` holds durations in
    /// `(BUCKET_BOUNDS[i-1], BUCKET_BOUNDS[i]]`, the last one those above every bound.
    counts: [u64; BUCKET_BOUNDS.len() + 1],
    /// Sum of every recorded duration, in nanoseconds (saturating: 584 years).
    sum_ns: u64,
}

impl Histogram {
    /// Counts one duration.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        if d.is_zero() {
            self.counts[0] += 1;
            return;
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the durations recorded, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// Cumulative counts for each bound of [`BUCKET_BOUNDS`] (durations at most that), as
    /// Prometheus' `_bucket{le=...}` series; `+Inf` is [`Histogram::count`].
    pub fn cumulative(&self) -> [u64; BUCKET_BOUNDS.len()] {
        let mut out = [0; BUCKET_BOUNDS.len()];
        let mut running = 0;
        for (o, c) in out.iter_mut().zip(self.counts) {
            running += c;
            *o = running;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_agree() {
        for (s, ns) in BUCKET_BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn durations_land_in_their_buckets() {
        let mut h = Histogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_micros(50)); // on the bound: le="0.00005"
        h.record(Duration::from_micros(51));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(3600));
        let c = h.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 3);
        assert_eq!(c[5], 3); // le 2.5 ms
        assert_eq!(c[6], 4); // le 5 ms
        assert_eq!(c[18], 4); // le 60 s: the hour is above every bound
        assert_eq!(h.count(), 5);
        let sum = 3600.0 + 0.003 + 0.000_051 + 0.000_05;
        assert!((h.sum_seconds() - sum).abs() < 1e-9);
    }
}

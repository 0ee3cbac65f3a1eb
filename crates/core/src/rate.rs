//! Per-client publish rate: a token bucket for messages and one for payload bytes.
//!
//! Each bucket is kept as the time at which it will be full again (the "theoretical
//! arrival time" of the generic cell rate algorithm): one number per bucket, advanced by
//! each message's cost, compared with the time the host passed in. No clock is read, nothing
//! is allocated, and a client within its limits costs a few additions per PUBLISH.
//!
//! ```text
//! full again at t  ──  a message costs 1/rate s (bytes: size/bytes_rate s)
//! within:  max(t, now) + cost − now <= bucket (burst/rate s; bytes: 1 s)
//! over:    throttle   → accepted, the host stops reading until t − bucket
//!          disconnect → refused, the connection closed (MQTT 5: DISCONNECT 0x96)
//! ```
//!
//! A bucket that is full takes any one message, so a message larger than a second's worth
//! of bytes is not refused for ever; it only makes the next ones wait longer.

use std::time::{Duration, Instant};

use crate::settings::Limits;
use crate::timers::Clock;

const NANOS: u64 = 1_000_000_000;

/// One connection's buckets: when each is full again, in nanoseconds since the router
/// started (0: full).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PublishRate {
    messages: u64,
    bytes: u64,
}

/// What one PUBLISH does to its sender's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Within the limits.
    Within,
    /// Over them: with `throttle`, it was counted and the client may be read again at
    /// this time; without, it was not counted (the caller refuses it).
    Over(Instant),
}

impl PublishRate {
    /// Counts a PUBLISH of `payload` bytes at `now`. `throttle`: the message is counted even
    /// over the limit (it was read already; the host then waits).
    pub(crate) fn publish(
        &mut self,
        limits: &Limits,
        clock: Clock,
        now: Instant,
        payload: usize,
        throttle: bool,
    ) -> RateVerdict {
        let now_ns = u64::try_from(now.saturating_duration_since(clock.started).as_nanos())
            .unwrap_or(u64::MAX);
        let mut next = (self.messages, self.bytes);
        let mut until = now_ns;
        if limits.max_publish_rate > 0 {
            let rate = u64::from(limits.max_publish_rate);
            let burst = match limits.publish_burst {
                0 => rate,
                b => u64::from(b),
            };
            let cost = NANOS / rate;
            let window = cost.saturating_mul(burst);
            let (t, wait) = bucket(self.messages, now_ns, cost, window);
            next.0 = t;
            until = until.max(wait);
        }
        if limits.max_publish_bytes_rate > 0 {
            let cost = u64::try_from(
                u128::from(payload as u64) * u128::from(NANOS)
                    / u128::from(limits.max_publish_bytes_rate),
            )
            .unwrap_or(u64::MAX);
            let (t, wait) = bucket(self.bytes, now_ns, cost, NANOS);
            next.1 = t;
            until = until.max(wait);
        }
        if until == now_ns {
            (self.messages, self.bytes) = next;
            return RateVerdict::Within;
        }
        if throttle {
            (self.messages, self.bytes) = next;
        }
        RateVerdict::Over(now + Duration::from_nanos(until - now_ns))
    }
}

/// One bucket full again at `full_at` takes a message of `cost` at `now` (bucket size
/// `window`): when it is full again after it, and when it is within its size again (`now`
/// if it is already, or if it was full before this message).
fn bucket(full_at: u64, now: u64, cost: u64, window: u64) -> (u64, u64) {
    let start = full_at.max(now);
    let next = start.saturating_add(cost);
    if start == now || next - now <= window {
        (next, now)
    } else {
        (next, next - window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RateAction;

    fn limits(rate: u32, burst: u32, bytes: u64) -> Limits {
        Limits {
            max_publish_rate: rate,
            publish_burst: burst,
            max_publish_bytes_rate: bytes,
            publish_rate_action: RateAction::Throttle,
            ..Limits::default()
        }
    }

    #[test]
    fn a_burst_then_one_message_per_interval() {
        let start = Instant::now();
        let clock = Clock { started: start };
        let l = limits(10, 5, 0);
        let mut r = PublishRate::default();
        for _ in 0..5 {
            assert_eq!(r.publish(&l, clock, start, 1, false), RateVerdict::Within);
        }
        // The sixth at once is over; refused, it is not counted.
        let over = r.publish(&l, clock, start, 1, false);
        assert_eq!(over, RateVerdict::Over(start + Duration::from_millis(100)));
        assert_eq!(r.publish(&l, clock, start, 1, false), over);
        // A tenth of a second later there is room for one, not two.
        let later = start + Duration::from_millis(100);
        assert_eq!(r.publish(&l, clock, later, 1, false), RateVerdict::Within);
        assert!(matches!(
            r.publish(&l, clock, later, 1, false),
            RateVerdict::Over(_)
        ));
        // Idle for a second: the whole burst again, no more.
        let idle = later + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(r.publish(&l, clock, idle, 1, false), RateVerdict::Within);
        }
        assert!(matches!(
            r.publish(&l, clock, idle, 1, false),
            RateVerdict::Over(_)
        ));
    }

    #[test]
    fn throttled_messages_count_and_push_the_wait_further() {
        let start = Instant::now();
        let clock = Clock { started: start };
        let l = limits(100, 1, 0);
        let mut r = PublishRate::default();
        assert_eq!(r.publish(&l, clock, start, 1, true), RateVerdict::Within);
        let ms = Duration::from_millis;
        assert_eq!(
            r.publish(&l, clock, start, 1, true),
            RateVerdict::Over(start + ms(10))
        );
        assert_eq!(
            r.publish(&l, clock, start, 1, true),
            RateVerdict::Over(start + ms(20))
        );
        // Read again when told: within again, for one message.
        assert_eq!(
            r.publish(&l, clock, start + ms(30), 1, true),
            RateVerdict::Within
        );
    }

    #[test]
    fn bytes_are_limited_per_second_and_a_full_bucket_takes_any_message() {
        let start = Instant::now();
        let clock = Clock { started: start };
        let l = limits(0, 0, 1000);
        let mut r = PublishRate::default();
        // Larger than a second's worth: let through from a full bucket...
        assert_eq!(
            r.publish(&l, clock, start, 5000, false),
            RateVerdict::Within
        );
        // ...and the next waits until the 5 s it cost are down to one.
        assert_eq!(
            r.publish(&l, clock, start, 10, false),
            RateVerdict::Over(start + Duration::from_millis(4010))
        );
        let later = start + Duration::from_millis(4010);
        assert_eq!(r.publish(&l, clock, later, 10, false), RateVerdict::Within);
        // No limit set: always within, nothing kept.
        let mut free = PublishRate::default();
        let none = limits(0, 0, 0);
        for _ in 0..1000 {
            assert_eq!(
                free.publish(&none, clock, start, 1 << 20, false),
                RateVerdict::Within
            );
        }
    }
}

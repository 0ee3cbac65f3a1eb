//! The timers' clock: every room keeps its own deadlines in order on it (connections,
//! sessions, retained messages, wills: one entry per item that has a deadline), so a tick
//! (see `tick.rs`) looks only at what is due, never at every connection or session.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A point on the timers' clock: milliseconds since the router started, never 0 (0 means
/// no timer). u64 milliseconds outlast any broker.
pub(crate) type Millis = u64;

/// The timers' clock: converts the host's instants to [`Millis`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) started: Instant,
}

impl Clock {
    pub(crate) fn millis(self, at: Instant) -> Millis {
        let ms = at.saturating_duration_since(self.started).as_millis();
        Millis::try_from(ms).unwrap_or(Millis::MAX).max(1)
    }

    /// The timers' key for a deadline: the millisecond after it, so that a timer found due
    /// (key <= now) is past its deadline.
    pub(crate) fn key(self, at: Instant) -> Millis {
        self.millis(at).saturating_add(1)
    }
}

/// Takes the entries of `timers` that are due at `now_ms`, earliest first.
pub(crate) fn pop_due<T: Ord>(
    timers: &mut BTreeSet<(Millis, T)>,
    now_ms: Millis,
) -> Vec<(Millis, T)> {
    let mut due = Vec::new();
    while timers.first().is_some_and(|(at, _)| *at <= now_ms) {
        due.extend(timers.pop_first());
    }
    due
}

/// Keep alive is enforced at one and a half times the interval [MQTT-3.1.2-22].
pub(crate) fn keep_alive_limit(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

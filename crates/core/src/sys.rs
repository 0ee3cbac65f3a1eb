//! `$SYS` topics, named and formatted as Mosquitto publishes them.

use std::time::{Duration, Instant};

/// Counters the router keeps (for `$SYS` and metrics). They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets queued for sending to clients.
    pub messages_sent: u64,
    /// Messages dropped: queue full, too large for the subscriber, or expired.
    pub messages_dropped: u64,
    /// Bytes read from sockets (kept by the network layer).
    pub bytes_received: u64,
    /// Bytes written to sockets (kept by the network layer).
    pub bytes_sent: u64,
}

/// What the broker holds and has done, as `$SYS` reports it (see
/// [`crate::Router::snapshot`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Snapshot {
    /// Time since the router started.
    pub uptime: Duration,
    /// Connections whose CONNECT was accepted.
    pub clients_connected: usize,
    /// Sessions, connected or not.
    pub clients_total: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Retained messages.
    pub retained: usize,
    /// The counters.
    pub stats: Stats,
}

/// The version string published on `$SYS/broker/version`.
pub fn version() -> String {
    format!("tinsel version {}", env!("CARGO_PKG_VERSION"))
}

/// Every `$SYS` topic with its payload.
pub(crate) fn topics(s: &Snapshot) -> Vec<(&'static str, String)> {
    let st = &s.stats;
    vec![
        ("$SYS/broker/version", version()),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", s.uptime.as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            s.clients_connected.to_string(),
        ),
        (
            "$SYS/broker/clients/active",
            s.clients_connected.to_string(),
        ),
        (
            "$SYS/broker/clients/disconnected",
            s.clients_total
                .saturating_sub(s.clients_connected)
                .to_string(),
        ),
        ("$SYS/broker/clients/total", s.clients_total.to_string()),
        (
            "$SYS/broker/messages/received",
            st.messages_received.to_string(),
        ),
        ("$SYS/broker/messages/sent", st.messages_sent.to_string()),
        (
            "$SYS/broker/messages/dropped",
            st.messages_dropped.to_string(),
        ),
        ("$SYS/broker/bytes/received", st.bytes_received.to_string()),
        ("$SYS/broker/bytes/sent", st.bytes_sent.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            s.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            s.retained.to_string(),
        ),
    ]
}

/// The counters and when `$SYS` is published next.
#[derive(Debug)]
pub(crate) struct Sys {
    pub(crate) stats: Stats,
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Sys {
    /// `$SYS` every `interval` (None: never), the first time at the first tick.
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Sys {
        Sys {
            stats: Stats::default(),
            interval,
            next: interval.map(|_| now),
        }
    }

    /// True if `$SYS` is due at `now` (and then not again before the interval passes).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        match (self.interval, self.next) {
            (Some(interval), Some(next)) if now >= next => {
                self.next = Some(now + interval);
                true
            }
            _ => false,
        }
    }
}

//! `$SYS` topics, named and formatted as Mosquitto publishes them.

use std::time::{Duration, Instant};

/// Counters the router keeps for `$SYS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// PUBLISH packets received from clients.
    pub(crate) messages_received: u64,
    /// PUBLISH packets queued for sending to clients.
    pub(crate) messages_sent: u64,
    /// Messages dropped: queue full, too large for the subscriber, or expired.
    pub(crate) messages_dropped: u64,
    /// Bytes read from sockets (kept by the network layer).
    pub(crate) bytes_received: u64,
    /// Bytes written to sockets (kept by the network layer).
    pub(crate) bytes_sent: u64,
}

/// A snapshot of what `$SYS` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SysSnapshot {
    pub(crate) uptime: Duration,
    pub(crate) clients_connected: usize,
    pub(crate) clients_total: usize,
    pub(crate) subscriptions: usize,
    pub(crate) retained: usize,
    pub(crate) stats: Stats,
}

/// The version string published on `$SYS/broker/version`.
pub fn version() -> String {
    format!("tinsel version {}", env!("CARGO_PKG_VERSION"))
}

/// Every `$SYS` topic with its payload.
pub(crate) fn topics(s: &SysSnapshot) -> Vec<(&'static str, String)> {
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

//! `$SYS` topics, named and formatted as Mosquitto publishes them.

use std::time::{Duration, Instant};

use tinsel_codec::{QoS, ReasonCode};

use crate::histogram::Histogram;
use crate::top_topics::TopTopics;

/// Why a message meant for a subscriber was not sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropCause {
    /// The session's queue was full (`max_queued_messages` or `max_queued_bytes`).
    QueueFull,
    /// QoS 0 for a connection that is not keeping up: `max_queued_messages` unwritten.
    SlowSubscriber,
    /// Larger than the subscriber's Maximum Packet Size.
    TooLarge,
    /// Its Message Expiry Interval passed before it could be sent.
    Expired,
    /// Anything else: no packet identifier free, a message that cannot be encoded.
    Other,
}

impl DropCause {
    /// Every cause, in the order of [`Stats::dropped`].
    pub const ALL: [DropCause; 5] = [
        DropCause::QueueFull,
        DropCause::SlowSubscriber,
        DropCause::TooLarge,
        DropCause::Expired,
        DropCause::Other,
    ];

    /// A name for labels and JSON (`queue_full`, `slow_subscriber`...).
    pub fn name(self) -> &'static str {
        match self {
            DropCause::QueueFull => "queue_full",
            DropCause::SlowSubscriber => "slow_subscriber",
            DropCause::TooLarge => "too_large",
            DropCause::Expired => "expired",
            DropCause::Other => "other",
        }
    }
}

/// Counters the router keeps (for `$SYS` and metrics). They only grow. Arrays by QoS are
/// indexed by the QoS (0, 1, 2); payload bytes count the application message only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// PUBLISH packets received from clients, by QoS.
    pub received: [u64; 3],
    /// Their payload bytes, by QoS.
    pub received_payload: [u64; 3],
    /// PUBLISH packets queued for sending to clients, by the QoS they are sent at.
    pub sent: [u64; 3],
    /// Their payload bytes, by QoS.
    pub sent_payload: [u64; 3],
    /// Messages not sent to a subscriber, by cause (in the order of [`DropCause::ALL`]).
    pub dropped: [u64; 5],
    /// Bytes read from sockets (kept by the network layer).
    pub bytes_received: u64,
    /// Bytes written to sockets (kept by the network layer).
    pub bytes_sent: u64,
    /// From accepting a PUBLISH to putting its copy in a subscriber's connection output:
    /// zero for a copy sent at once, how long it waited for one that was queued (offline
    /// client, Receive Maximum used up).
    pub delivery_latency: Histogram,
}

impl Stats {
    /// PUBLISH packets received from clients.
    pub fn messages_received(&self) -> u64 {
        self.received.iter().sum()
    }

    /// PUBLISH packets queued for sending to clients.
    pub fn messages_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Messages dropped, whatever the cause.
    pub fn messages_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Counts a message not sent to a subscriber.
    #[inline]
    pub(crate) fn drop(&mut self, cause: DropCause) {
        self.dropped[cause as usize] += 1;
    }

    /// Counts a PUBLISH received.
    #[inline]
    pub(crate) fn received(&mut self, qos: QoS, payload: usize) {
        self.received[usize::from(qos.as_u8())] += 1;
        self.received_payload[usize::from(qos.as_u8())] += payload as u64;
    }

    /// Counts a PUBLISH sent.
    #[inline]
    pub(crate) fn sent(&mut self, qos: QoS, payload: usize) {
        self.sent[usize::from(qos.as_u8())] += 1;
        self.sent_payload[usize::from(qos.as_u8())] += payload as u64;
    }
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
            st.messages_received().to_string(),
        ),
        ("$SYS/broker/messages/sent", st.messages_sent().to_string()),
        (
            "$SYS/broker/messages/dropped",
            st.messages_dropped().to_string(),
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
    /// CONNECTs refused, by the CONNACK's reason code (a handful of codes: a short list).
    pub(crate) refused: Vec<(ReasonCode, u64)>,
    /// The topics clients publish to most.
    pub(crate) topics: TopTopics,
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Sys {
    /// `$SYS` every `interval` (None: never), the first time at the first tick.
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Sys {
        Sys {
            stats: Stats::default(),
            refused: Vec::new(),
            topics: TopTopics::default(),
            interval,
            next: interval.map(|_| now),
        }
    }

    /// Counts a CONNECT refused with `reason`.
    pub(crate) fn refused(&mut self, reason: ReasonCode) {
        match self.refused.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.refused.push((reason, 1)),
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

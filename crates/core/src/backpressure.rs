//! Back-pressure: which subscribers make publishers wait.
//!
//! A subscriber that keeps taking its messages, but slower than they come, would lose
//! messages (QoS 0 backlog full) or fill its session queue. Instead, from half the queue
//! limit on, the publishers feeding it are asked to wait: the host stops reading from a
//! publisher while [`crate::Router::congested`] says true, so that TCP slows it down. A
//! subscriber that took nothing for [`STALLED`] (its client does not read, or acknowledges
//! nothing) holds nobody back: it only loses messages. A client never waits for itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::FastSet;
use crate::connections::Connections;
use crate::sessions::Sessions;
use crate::settings::Limits;

/// A subscriber that acknowledged nothing for this long is stalled: it no longer makes
/// publishers wait.
pub(crate) const STALLED: Duration = Duration::from_millis(500);

/// Queue length at which a connected subscriber makes publishers wait: half the queue
/// limit, leaving the other half for what is already on its way.
pub(crate) fn high_water(limits: &Limits) -> usize {
    (limits.max_queued_messages / 2).max(1)
}

/// The subscribers publishers wait for.
#[derive(Debug, Default)]
pub(crate) struct Backpressure {
    /// Set when a delivery found a congested subscriber; see `Router::take_pressure`.
    pressure: bool,
    /// Subscribers that made publishers wait. Bounded by the number of sessions.
    congested: FastSet<Arc<str>>,
    /// The client whose PUBLISH is being routed: it never waits for itself.
    publishing: Option<Arc<str>>,
}

impl Backpressure {
    /// `client`'s PUBLISH is being routed (None: the broker's own message).
    pub(crate) fn publishing(&mut self, client: Option<Arc<str>>) {
        self.publishing = client;
    }

    /// True if `client` may make the publisher being routed wait (it is not that
    /// publisher).
    pub(crate) fn may_hold(&self, client: &Arc<str>) -> bool {
        self.publishing.as_ref() != Some(client)
    }

    /// `client` is congested: publishers should wait for it.
    pub(crate) fn note(&mut self, client: &Arc<str>) {
        self.pressure = true;
        self.congested.insert(client.clone());
    }

    /// True (once) if a congested subscriber was found since the last call.
    pub(crate) fn take_pressure(&mut self) -> bool {
        std::mem::take(&mut self.pressure)
    }

    /// True while a connected subscriber that is still making progress has a long queue or
    /// a long QoS 0 backlog (above half of the high-water mark).
    pub(crate) fn congested(
        &mut self,
        now: Instant,
        limits: &Limits,
        sessions: &Sessions,
        conns: &Connections,
    ) -> bool {
        let low = high_water(limits) / 2;
        let fresh = |t: Instant| now.saturating_duration_since(t) < STALLED;
        self.congested.retain(|client| {
            let Some(s) = sessions.get(client) else {
                return false;
            };
            let Some(c) = s.conn.and_then(|id| conns.get(id)) else {
                return false;
            };
            let (qos0, since) = c.out.qos0_waiting();
            (s.queue.len() > low && fresh(s.last_progress))
                || (qos0 > low && since.is_some_and(fresh))
        });
        !self.congested.is_empty()
    }
}

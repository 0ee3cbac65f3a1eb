//! A client's session: what survives a disconnect when the session has not expired.
//!
//! Outgoing QoS flows, one entry per packet identifier in [`Session::inflight`]:
//!
//! ```text
//! QoS 1: PUBLISH ->            <- PUBACK                 (entry removed)
//! QoS 2: PUBLISH -> (Publish)  <- PUBREC  PUBREL -> (Release)  <- PUBCOMP (entry removed)
//! ```
//!
//! Incoming QoS 2 (method A: forward on PUBLISH, remember the packet identifier until
//! PUBREL so that a repeated PUBLISH is not forwarded again):
//!
//! ```text
//! PUBLISH -> forward, PUBREC     PUBLISH(dup) -> PUBREC only     PUBREL -> PUBCOMP (id forgotten)
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tinsel_codec::{Publish, SubscriptionOptions};

use crate::FastMap;
use crate::connections::ConnId;
use crate::listener::ListenerId;

/// Session expiry that never ends (MQTT 3 persistent sessions, MQTT 5 0xFFFFFFFF).
pub(crate) const NEVER_EXPIRES: u32 = u32::MAX;

/// One subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubEntry {
    /// The options granted (QoS already capped).
    pub(crate) options: SubscriptionOptions,
    /// MQTT 5 subscription identifier.
    pub(crate) id: Option<u32>,
}

/// An outgoing QoS 1/2 message the client has not finished acknowledging.
#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2). Kept with its full topic
    /// and the time it was received, for a resend with DUP.
    Publish {
        /// The message as first sent (without topic alias). Inline, not boxed: a message
        /// in flight then costs no allocation of its own (the map holds only messages in
        /// flight, so idle sessions pay nothing for the larger entry).
        publish: Publish,
        /// When the broker received it (for the message expiry countdown).
        received: Instant,
    },
    /// PUBREL sent, waiting for PUBCOMP.
    Release,
}

/// A message waiting for the client (offline, or its Receive Maximum is used up).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The message, QoS already downgraded for this subscriber.
    pub(crate) publish: Publish,
    /// When the broker received it.
    pub(crate) received: Instant,
}

/// A session's subscriptions, sorted by filter. Most clients hold one or a few: a sorted
/// `Vec` costs 32 bytes per subscription, where a `BTreeMap` allocates a 320-byte node for
/// the first one (a device that connects and subscribes to its command topic paid that in
/// every session). Lookups are binary searches; inserting is linear, which a client with
/// thousands of subscriptions pays once per SUBSCRIBE.
#[derive(Debug, Default)]
pub(crate) struct FilterList(Vec<(Arc<str>, SubEntry)>);

/// Up to this many subscriptions a session grows its list one at a time.
const SMALL: usize = 4;

impl FilterList {
    fn find(&self, filter: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(f, _)| (**f).cmp(filter))
    }

    /// Adds or replaces the subscription to `filter`.
    pub(crate) fn insert(&mut self, filter: &str, entry: SubEntry) {
        match self.find(filter) {
            Ok(i) => self.0[i].1 = entry,
            Err(i) => {
                // Most devices subscribe to one or two filters: room for exactly those
                // (a Vec's first growth would make room for four).
                if self.0.len() < SMALL && self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (Arc::from(filter), entry));
            }
        }
    }

    /// Removes the subscription to `filter`, if there is one.
    pub(crate) fn remove(&mut self, filter: &str) -> Option<SubEntry> {
        let i = self.find(filter).ok()?;
        let (_, entry) = self.0.remove(i);
        if self.0.is_empty() {
            // A client that unsubscribed from everything keeps no spare capacity.
            self.0 = Vec::new();
        }
        Some(entry)
    }

    /// How many subscriptions there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there is a subscription to `filter`.
    pub(crate) fn contains(&self, filter: &str) -> bool {
        self.find(filter).is_ok()
    }

    /// The filters, in order.
    pub(crate) fn filters(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(f, _)| f)
    }

    /// The subscriptions, in the order of their filters.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &SubEntry)> {
        self.0.iter().map(|(f, e)| (f, e))
    }
}

/// A session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection currently attached, if any.
    pub(crate) conn: Option<ConnId>,
    /// Session Expiry Interval in seconds (0: ends with the connection).
    pub(crate) expiry: u32,
    /// When the connection went away (None while connected).
    pub(crate) disconnected_at: Option<Instant>,
    /// Subscriptions by the filter as the client wrote it (`$share/...` included).
    pub(crate) subscriptions: FilterList,
    /// The identity its rights are looked up by (set by each CONNECT that resumes it).
    pub(crate) username: Option<Arc<str>>,
    /// The listener of its last connection (for per-listener rights while it is offline).
    pub(crate) listener: ListenerId,
    /// Outgoing QoS 1/2 messages not yet completely acknowledged, by packet identifier.
    /// A hash map: a message costs one insertion and one removal (a B-tree's were an
    /// eighth of the broker's work per QoS 1 message); [`Session::inflight_in_order`] gives
    /// the order for resending.
    pub(crate) inflight: FastMap<u16, Inflight>,
    /// Messages waiting to be sent. Bounded by the message and byte limits; when full, the
    /// newest message (the one being added) is dropped.
    pub(crate) queue: VecDeque<Queued>,
    /// Payload bytes in `queue`.
    pub(crate) queued_bytes: usize,
    /// Incoming QoS 2 packet identifiers between PUBLISH and PUBREL. Bounded: a client that
    /// opens more than the broker's Receive Maximum is disconnected (0x93).
    pub(crate) incoming_qos2: BTreeSet<u16>,
    /// Last time the client acknowledged something (or connected): tells a slow subscriber
    /// from a stalled one.
    pub(crate) last_progress: Instant,
    next_pid: u16,
}

impl Session {
    pub(crate) fn new(expiry: u32, now: Instant) -> Session {
        Session {
            conn: None,
            expiry,
            disconnected_at: None,
            subscriptions: FilterList::default(),
            username: None,
            listener: 0,
            inflight: FastMap::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: BTreeSet::new(),
            last_progress: now,
            next_pid: 1,
        }
    }

    /// The next free packet identifier, or None if all 65,535 are in flight.
    pub(crate) fn alloc_pid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            if !self.inflight.contains_key(&pid) {
                return Some(pid);
            }
        }
        None
    }

    /// The packet identifiers in flight, oldest first: identifiers are given out in
    /// increasing order (wrapping), so the oldest is the first after `next_pid`.
    pub(crate) fn inflight_in_order(&self) -> Vec<u16> {
        let mut pids: Vec<u16> = self.inflight.keys().copied().collect();
        let next = self.next_pid;
        pids.sort_unstable_by_key(|&p| p.wrapping_sub(next));
        pids
    }

    /// Queues a message; false (and the message dropped) when the queue is full.
    pub(crate) fn enqueue(&mut self, q: Queued, max_messages: usize, max_bytes: usize) -> bool {
        let len = q.publish.payload.len();
        if self.queue.len() >= max_messages
            || (max_bytes > 0 && self.queued_bytes + len > max_bytes)
        {
            return false;
        }
        self.queued_bytes += len;
        self.queue.push_back(q);
        true
    }

    /// Takes the oldest queued message.
    pub(crate) fn dequeue(&mut self) -> Option<Queued> {
        let q = self.queue.pop_front()?;
        self.queued_bytes -= q.publish.payload.len();
        Some(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_wrap_and_skip_inflight() {
        let mut s = Session::new(0, Instant::now());
        assert_eq!(s.alloc_pid(), Some(1));
        s.inflight.insert(2, Inflight::Release);
        assert_eq!(s.alloc_pid(), Some(3));
        s.next_pid = u16::MAX;
        assert_eq!(s.alloc_pid(), Some(u16::MAX));
        assert_eq!(s.alloc_pid(), Some(1));
    }

    #[test]
    fn inflight_order_is_the_order_given_out_across_the_wrap() {
        let mut s = Session::new(0, Instant::now());
        s.next_pid = u16::MAX - 1;
        for _ in 0..4 {
            let pid = s.alloc_pid().unwrap();
            s.inflight.insert(pid, Inflight::Release);
        }
        assert_eq!(s.inflight_in_order(), [u16::MAX - 1, u16::MAX, 1, 2]);
    }

    #[test]
    fn subscriptions_stay_sorted_replace_and_free_their_space() {
        let e = |qos: u8| SubEntry {
            options: SubscriptionOptions {
                qos: tinsel_codec::QoS::from_u8(qos).unwrap(),
                ..SubscriptionOptions::default()
            },
            id: None,
        };
        let mut subs = FilterList::default();
        subs.insert("b/#", e(0));
        // One subscription, room for one.
        assert_eq!(subs.0.capacity(), 1);
        subs.insert("a/+", e(1));
        subs.insert("c", e(2));
        subs.insert("a/+", e(2));
        assert_eq!(subs.0.len(), 3);
        let filters: Vec<&str> = subs.filters().map(|f| &**f).collect();
        assert_eq!(filters, ["a/+", "b/#", "c"]);
        assert_eq!(subs.0[0].1, e(2));
        assert_eq!(subs.remove("b/#"), Some(e(0)));
        assert_eq!(subs.remove("b/#"), None);
        subs.remove("a/+");
        subs.remove("c");
        assert!(subs.0.is_empty());
        assert_eq!(subs.0.capacity(), 0);
    }
}

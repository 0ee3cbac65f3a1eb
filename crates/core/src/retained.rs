//! Retained messages: at most one per topic, kept until replaced, deleted (an empty
//! retained PUBLISH) or expired (its Message Expiry Interval), and sent to new
//! subscriptions as their Retain Handling asks.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_codec::{ByteStr, Publish};

use crate::message::clear_hop_properties;
use crate::retained_tree::RetainedStore;
use crate::timers::{Clock, Millis, pop_due};

/// A retained message.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) publish: Publish,
    pub(crate) received: Instant,
}

/// The retained messages and their expiry deadlines.
pub(crate) struct RetainedMessages {
    tree: RetainedStore<Retained>,
    /// When retained messages with a Message Expiry Interval expire: one entry per such
    /// message (replacing or deleting a message takes its entry out). Retained messages
    /// without an expiry (most) cost nothing here.
    timers: BTreeSet<(Millis, ByteStr)>,
}

impl Default for RetainedMessages {
    fn default() -> Self {
        RetainedMessages {
            tree: RetainedStore::new(),
            timers: BTreeSet::new(),
        }
    }
}

/// When a retained message expires (None: it never does).
fn due(clock: Clock, m: &Retained) -> Option<Millis> {
    let e = m.publish.properties.message_expiry_interval?;
    let at = m.received.checked_add(Duration::from_secs(u64::from(e)))?;
    Some(clock.key(at))
}

/// True if `p`, received at `received`, has outlived its Message Expiry Interval.
pub(crate) fn expired(p: &Publish, received: Instant, now: Instant) -> bool {
    p.properties
        .message_expiry_interval
        .is_some_and(|e| now.saturating_duration_since(received).as_secs() >= u64::from(e))
}

impl RetainedMessages {
    /// Stores, replaces or (empty payload) deletes the retained message of `p.topic`.
    pub(crate) fn store(&mut self, clock: Clock, now: Instant, p: &Publish) {
        if p.payload.is_empty() {
            if let Some(old) = self.tree.remove(&p.topic) {
                self.forget_timer(clock, &old);
            }
            return;
        }
        // Copied: a retained message may live for days and must not pin a read buffer.
        let topic =
            ByteStr::from_utf8(Bytes::copy_from_slice(p.topic.as_bytes())).unwrap_or_default();
        let mut properties = p.properties.clone();
        clear_hop_properties(&mut properties);
        let publish = Publish {
            dup: false,
            qos: p.qos,
            retain: true,
            topic,
            packet_id: 0,
            properties,
            payload: Bytes::copy_from_slice(&p.payload),
        };
        let msg = Retained {
            publish,
            received: now,
        };
        let timer = due(clock, &msg).map(|at| (at, msg.publish.topic.clone()));
        // The old entry first: a message replaced in the same millisecond with the same
        // expiry has the same entry.
        if let Some(old) = self.tree.insert(&p.topic, msg) {
            self.forget_timer(clock, &old);
        }
        if let Some(t) = timer {
            self.timers.insert(t);
        }
    }

    /// Takes a replaced or deleted retained message's entry out of the timers.
    fn forget_timer(&mut self, clock: Clock, old: &Retained) {
        if let Some(at) = due(clock, old) {
            self.timers.remove(&(at, old.publish.topic.clone()));
        }
    }

    /// Removes the messages whose expiry interval has passed.
    pub(crate) fn expire(&mut self, clock: Clock, now: Instant) {
        for (_, topic) in pop_due(&mut self.timers, clock.millis(now)) {
            if self
                .tree
                .get(&topic)
                .is_some_and(|m| expired(&m.publish, m.received, now))
            {
                self.tree.remove(&topic);
            }
        }
    }

    /// Calls `f` with every retained message matching `filter`.
    pub(crate) fn for_each_match(&self, filter: &str, f: impl FnMut(&Retained)) {
        let mut f = f;
        self.tree.for_each_match(filter, |_, m| f(m));
    }

    /// The retained message of `topic`, if there is one (expired or not).
    pub(crate) fn get(&self, topic: &str) -> Option<&Retained> {
        self.tree.get(topic)
    }

    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Messages with an expiry deadline, for tests.
    #[cfg(test)]
    pub(crate) fn timers_len(&self) -> usize {
        self.timers.len()
    }
}

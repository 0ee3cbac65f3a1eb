//! Retained messages: at most one per topic, kept until replaced, deleted (an empty
//! retained PUBLISH) or expired (its Message Expiry Interval), and sent to new
//! subscriptions as their Retain Handling asks.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_codec::{ByteStr, Properties, Publish, QoS};

use crate::message::clear_hop_properties;
use crate::retained_tree::RetainedStore;
use crate::timers::{Clock, Millis, pop_due};

/// A retained message, without its topic (the tree keeps that): a million of them are
/// a million of these, so it holds only what a delivery needs.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    payload: Bytes,
    properties: Properties,
    qos: QoS,
    pub(crate) received: Instant,
}

impl Retained {
    /// The message as it is sent: retain set, sharing the topic's and payload's bytes.
    pub(crate) fn publish(&self, topic: &ByteStr) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: true,
            topic: topic.clone(),
            packet_id: 0,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        }
    }

    pub(crate) fn payload(&self) -> &Bytes {
        &self.payload
    }

    pub(crate) fn properties(&self) -> &Properties {
        &self.properties
    }

    pub(crate) fn qos(&self) -> QoS {
        self.qos
    }

    /// True once it has outlived its Message Expiry Interval.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        expired_after(&self.properties, self.received, now)
    }
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
    let e = m.properties.message_expiry_interval?;
    let at = m.received.checked_add(Duration::from_secs(u64::from(e)))?;
    Some(clock.key(at))
}

/// True if a message with `properties`, received at `received`, has outlived its Message
/// Expiry Interval.
fn expired_after(properties: &Properties, received: Instant, now: Instant) -> bool {
    properties
        .message_expiry_interval
        .is_some_and(|e| now.saturating_duration_since(received).as_secs() >= u64::from(e))
}

impl RetainedMessages {
    /// Stores, replaces or (empty payload) deletes the retained message of `p.topic`.
    pub(crate) fn store(&mut self, clock: Clock, now: Instant, p: &Publish) {
        if p.payload.is_empty() {
            if let Some(old) = self.tree.remove(&p.topic) {
                self.forget_timer(clock, &p.topic, &old);
            }
            return;
        }
        let mut properties = p.properties.clone();
        clear_hop_properties(&mut properties);
        // Copied (as the tree copies the topic): a retained message may live for days and
        // must not pin a read buffer.
        let msg = Retained {
            payload: Bytes::copy_from_slice(&p.payload),
            properties,
            qos: p.qos,
            received: now,
        };
        let timer = due(clock, &msg);
        // The old entry first: a message replaced in the same millisecond with the same
        // expiry has the same entry.
        if let Some(old) = self.tree.insert(&p.topic, msg) {
            self.forget_timer(clock, &p.topic, &old);
        }
        if let Some(at) = timer {
            let topic =
                ByteStr::from_utf8(Bytes::copy_from_slice(p.topic.as_bytes())).unwrap_or_default();
            self.timers.insert((at, topic));
        }
    }

    /// Takes a replaced or deleted retained message's entry out of the timers.
    fn forget_timer(&mut self, clock: Clock, topic: &ByteStr, old: &Retained) {
        if let Some(at) = due(clock, old) {
            self.timers.remove(&(at, topic.clone()));
        }
    }

    /// Removes the messages whose expiry interval has passed.
    pub(crate) fn expire(&mut self, clock: Clock, now: Instant) {
        for (_, topic) in pop_due(&mut self.timers, clock.millis(now)) {
            if self.tree.get(&topic).is_some_and(|m| m.expired(now)) {
                self.tree.remove(&topic);
            }
        }
    }

    /// Calls `f` with the topic and message of every retained message matching `filter`.
    pub(crate) fn for_each_match(&self, filter: &str, f: impl FnMut(&ByteStr, &Retained)) {
        self.tree.for_each_match(filter, f);
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

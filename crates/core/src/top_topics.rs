//! The busiest topics: a space-saving sketch of the topics clients publish to.
//!
//! [`SLOTS`] counters, each with a topic, fixed from the start: memory does not grow with
//! the number of topics. A topic already counted adds one to its counter; a new one, when
//! every slot is taken (the sketch is full), replaces the topic with the smallest count and
//! takes over that count plus one, remembering the count it inherited as its possible
//! error. So a count is never below the topic's true count and at most `error` above it;
//! every topic that had more than 1/[`SLOTS`] of the messages is in the sketch (Metwally,
//! Agrawal and El Abbadi, "Efficient computation of frequent and top-k elements in data
//! streams", 2005). Counts are since the broker started.
//!
//! Per message: one hash of the topic and a scan of [`SLOTS`] hashes; a new topic also
//! looks for a slot with the smallest count and copies the topic into the slot's own
//! string, whose capacity is kept (at most [`MAX_TOPIC`] bytes are kept of a topic): no
//! allocation once the slots have grown to the topics seen. The search for the smallest
//! count starts after the slot replaced last and stops at the first slot holding the
//! smallest count known (counts only grow, so that one is a smallest): a stream of
//! ever-new topics (every device on its own topic) replaces slots in turn, one or two
//! looks each, rather than scanning all of them for every message.

use std::hash::BuildHasher;

/// Topics the sketch follows.
pub const SLOTS: usize = 64;

/// Bytes of a topic kept for display; longer topics are cut (at a character boundary) and
/// still told apart by the hash of their whole name.
pub const MAX_TOPIC: usize = 256;

/// One topic and its count, as [`crate::Router::top_topics`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicCount {
    /// The topic (cut to [`MAX_TOPIC`] bytes).
    pub topic: String,
    /// Messages counted for it: at least its true count, at most `error` more.
    pub count: u64,
    /// How much of `count` it may have inherited from the topic it replaced.
    pub error: u64,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    hash: u64,
    count: u64,
    error: u64,
    topic: String,
}

/// The sketch. See the module docs.
#[derive(Debug)]
pub(crate) struct TopTopics {
    hasher: foldhash::fast::FixedState,
    /// Slots in use first; `used` of them.
    slots: Box<[Slot]>,
    used: usize,
    /// No slot counts less than this (once every slot is used).
    floor: u64,
    /// Where the next search for a smallest count starts.
    cursor: usize,
}

impl Default for TopTopics {
    fn default() -> Self {
        TopTopics {
            hasher: foldhash::fast::FixedState::with_seed(0x7137_5e1c),
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            used: 0,
            floor: 0,
            cursor: 0,
        }
    }
}

impl TopTopics {
    /// Counts one message on `topic`.
    #[inline]
    pub(crate) fn count(&mut self, topic: &str) {
        let hash = self.hasher.hash_one(topic);
        let kept = cut(topic);
        let used = &mut self.slots[..self.used];
        if let Some(s) = used.iter_mut().find(|s| s.hash == hash && s.topic == kept) {
            s.count += 1;
            return;
        }
        self.replace(hash, kept);
    }

    /// A topic not in the sketch: takes a free slot, or the one with the smallest count.
    #[cold]
    fn replace(&mut self, hash: u64, topic: &str) {
        let (i, inherited) = if self.used < SLOTS {
            self.used += 1;
            (self.used - 1, 0)
        } else {
            let i = self.smallest();
            self.cursor = (i + 1) % SLOTS;
            (i, self.slots[i].count)
        };
        let s = &mut self.slots[i];
        s.hash = hash;
        s.count = inherited + 1;
        s.error = inherited;
        s.topic.clear();
        s.topic.push_str(topic);
    }

    /// A slot with the smallest count, all slots being used: the first from `cursor` on
    /// that holds `floor`, else (every count grew past it) a full scan for the new floor.
    fn smallest(&mut self) -> usize {
        let floor = self.floor;
        let found = (0..SLOTS)
            .map(|k| (self.cursor + k) % SLOTS)
            .find(|&i| self.slots[i].count == floor);
        if let Some(i) = found {
            return i;
        }
        let (i, s) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.count)
            .expect("SLOTS > 0");
        self.floor = s.count;
        i
    }

    /// The `n` topics with the highest counts, highest first (ties by topic).
    pub(crate) fn top(&self, n: usize) -> Vec<TopicCount> {
        let mut all: Vec<&Slot> = self.slots[..self.used].iter().collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
        all.into_iter()
            .take(n)
            .map(|s| TopicCount {
                topic: s.topic.clone(),
                count: s.count,
                error: s.error,
            })
            .collect()
    }
}

/// At most [`MAX_TOPIC`] bytes of `topic`, cut at a character boundary.
fn cut(topic: &str) -> &str {
    if topic.len() <= MAX_TOPIC {
        return topic;
    }
    let mut end = MAX_TOPIC;
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    &topic[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_while_there_is_room() {
        let mut t = TopTopics::default();
        for (topic, n) in [("a", 5), ("b", 3), ("c", 9)] {
            for _ in 0..n {
                t.count(topic);
            }
        }
        let top = t.top(2);
        assert_eq!(
            top.iter()
                .map(|c| (c.topic.as_str(), c.count, c.error))
                .collect::<Vec<_>>(),
            [("c", 9, 0), ("a", 5, 0)]
        );
    }

    #[test]
    fn heavy_topics_stay_when_the_sketch_is_full() {
        let mut t = TopTopics::default();
        // 10,000 distinct topics once each, interleaved with two heavy ones.
        for i in 0..10_000 {
            t.count(&format!("noise/{i}"));
            if i % 4 == 0 {
                t.count("heavy/1");
            }
            if i % 10 == 0 {
                t.count("heavy/2");
            }
        }
        assert_eq!(t.used, SLOTS);
        let top = t.top(2);
        assert_eq!(top[0].topic, "heavy/1");
        assert_eq!(top[1].topic, "heavy/2");
        // Never below the true count, at most `error` above it.
        assert!(top[0].count >= 2500 && top[0].count - top[0].error <= 2500);
        assert!(top[1].count >= 1000 && top[1].count - top[1].error <= 1000);
    }

    #[test]
    fn bounds_hold_on_a_skewed_random_stream() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut t = TopTopics::default();
        let mut truth = std::collections::HashMap::new();
        let n = 20_000;
        for _ in 0..n {
            // Skewed: topic k with probability about proportional to 1/k.
            let k = (1.0 / rng.random_range(0.002f64..1.0)) as u32;
            let topic = format!("t/{k}");
            t.count(&topic);
            *truth.entry(topic).or_insert(0u64) += 1;
        }
        let all = t.top(SLOTS);
        assert_eq!(all.iter().map(|c| c.count).sum::<u64>(), n);
        for c in &all {
            let real = truth[&c.topic];
            assert!(
                c.count >= real && c.count - c.error <= real,
                "{c:?} real {real}"
            );
        }
        for (topic, &real) in &truth {
            if real > n / SLOTS as u64 {
                assert!(
                    all.iter().any(|c| &c.topic == topic),
                    "{topic} ({real}) missing"
                );
            }
        }
    }

    #[test]
    fn long_topics_are_cut_and_still_counted_apart() {
        let mut t = TopTopics::default();
        let long_a = format!("{}a", "é".repeat(200));
        let long_b = format!("{}b", "é".repeat(200));
        t.count(&long_a);
        t.count(&long_b);
        t.count(&long_b);
        let top = t.top(5);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].count, 2);
        assert!(top[0].topic.len() <= MAX_TOPIC);
        assert_eq!(top[0].topic, top[1].topic); // same first 256 bytes
    }
}

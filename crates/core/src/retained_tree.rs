//! Retained messages keyed by topic levels.
//!
//! [`RetainedStore`] keeps at most one message per topic name in a tree with one node per
//! topic level. Looking up the retained messages for a new subscription walks the tree with
//! the filter: an exact level follows one child, `+` visits every child of the node and
//! `#` visits the node and its whole subtree, so `a/#` touches only the `a` branch.
//!
//! Matching follows MQTT (see [`crate::topic_tree`]): `a/#` matches `a`, empty levels are
//! levels, and filters starting with `+` or `#` do not match topics that start with `$`
//! [MQTT-4.7.2-1]. Topics must be valid topic names (no wildcards); filters must be valid
//! and not shared subscriptions.
//!
//! Like the topic tree, nothing here recurses, so a topic with very many levels cannot
//! overflow the stack, and matching allocates nothing unless a walk has more than
//! 32 pending branches.

use std::collections::hash_map;

use tinsel_codec::ByteStr;

use crate::level_map::{
    INLINE_FRAMES, InlineStack, LevelNode, level_at, remove_and_prune, shrink_if_sparse,
};

/// Retained messages: at most one per topic name.
pub struct RetainedStore<M> {
    root: Node<M>,
    len: usize,
}

struct Node<M> {
    children: crate::FastMap<Box<str>, Node<M>>,
    /// The retained message of the topic that ends here, with that topic's full name (the
    /// name a delivery shares). Boxed: most nodes hold none, and every node is a slot of
    /// its parent's table, so a message inline would make every slot as big.
    msg: Option<Box<(ByteStr, M)>>,
}

impl<M> Node<M> {
    fn new() -> Self {
        Node {
            children: crate::FastMap::default(),
            msg: None,
        }
    }
}

impl<M> LevelNode for Node<M> {
    fn child(&self, level: &str) -> Option<&Self> {
        self.children.get(level)
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        self.children.get_mut(level)
    }

    fn take_child(&mut self, level: &str) -> Option<Self> {
        let child = self.children.remove(level);
        shrink_if_sparse(&mut self.children);
        child
    }

    fn degree(&self) -> usize {
        self.children.len()
    }

    fn is_bare(&self) -> bool {
        self.msg.is_none()
    }

    #[cfg(test)]
    fn children(&self) -> impl Iterator<Item = &Self> {
        self.children.values()
    }
}

impl<M> Drop for Node<M> {
    /// Drops the subtree iteratively: a deep branch would overflow the stack with the
    /// default recursive drop.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<M>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, n)| n));
        }
    }
}

/// `topic` as the name kept with its message: copied, so that a message kept for long
/// does not pin the buffer the topic was read into.
fn named(topic: &str) -> ByteStr {
    // A topic name that got this far is valid; an empty name is what a bug would leave.
    ByteStr::try_from(topic).unwrap_or_default()
}

/// A pending branch of a filter walk.
enum Frame<'a, M> {
    /// `node` was reached by matching the filter up to byte `pos` (`None`: the whole filter).
    Match(&'a Node<M>, Option<usize>),
    /// A `+` level: every child yet to be visited, each continuing at filter byte `next`.
    /// `skip_dollar` is set at the first level.
    Plus(hash_map::Iter<'a, Box<str>, Node<M>>, Option<usize>, bool),
    /// Below a `#`: every node of these subtrees matches.
    All(hash_map::Iter<'a, Box<str>, Node<M>>, bool),
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        RetainedStore {
            root: Node::new(),
            len: 0,
        }
    }
}

impl<M> RetainedStore<M> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retains `msg` for `topic`; returns the message it replaces, if any.
    pub fn insert(&mut self, topic: &str, msg: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            // Look up first so an existing level costs no allocation.
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::new());
            }
            node = node
                .children
                .get_mut(level)
                .expect("child was just looked up or inserted");
        }
        match &mut node.msg {
            Some(old) => Some(std::mem::replace(&mut old.1, msg)),
            slot @ None => {
                *slot = Some(Box::new((named(topic), msg)));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the message retained for `topic`; nodes left without a message and
    /// children are removed, so churn does not grow the tree.
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        let kept = remove_and_prune(
            &mut self.root,
            topic,
            |n| n.msg.is_some(),
            |n| n.msg.is_some(),
            |n| n.msg.take(),
        )?;
        self.len -= 1;
        Some(kept.1)
    }

    /// The message retained for `topic`.
    pub fn get(&self, topic: &str) -> Option<&M> {
        self.get_named(topic).map(|(_, m)| m)
    }

    /// The message retained for `topic`, with the topic name it keeps.
    pub fn get_named(&self, topic: &str) -> Option<(&ByteStr, &M)> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.msg.as_deref().map(|(t, m)| (t, m))
    }

    /// Calls `f` with the topic and message of every retained message whose topic matches
    /// `filter`, in unspecified order.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&ByteStr, &M)) {
        let mut emit = |node: &Node<M>| {
            if let Some(kept) = &node.msg {
                f(&kept.0, &kept.1);
            }
        };
        let mut stack: InlineStack<Frame<'_, M>, INLINE_FRAMES> = InlineStack::new();
        stack.push(Frame::Match(&self.root, Some(0)));

        while let Some(frame) = stack.last_mut() {
            match frame {
                Frame::Plus(children, next, skip_dollar) => {
                    let (next, skip_dollar) = (*next, *skip_dollar);
                    match children.next() {
                        Some((level, child)) => {
                            if !(skip_dollar && level.starts_with('$')) {
                                stack.push(Frame::Match(child, next));
                            }
                        }
                        None => {
                            stack.pop();
                        }
                    }
                }
                Frame::All(children, skip_dollar) => {
                    let skip_dollar = *skip_dollar;
                    match children.next() {
                        Some((level, child)) => {
                            if !(skip_dollar && level.starts_with('$')) {
                                emit(child);
                                if !child.children.is_empty() {
                                    stack.push(Frame::All(child.children.iter(), false));
                                }
                            }
                        }
                        None => {
                            stack.pop();
                        }
                    }
                }
                Frame::Match(..) => {
                    let Some(Frame::Match(mut node, mut pos)) = stack.pop() else {
                        unreachable!("the top frame is a Match frame");
                    };
                    // Follow exact levels in this loop; wildcards push frames.
                    loop {
                        let Some(p) = pos else {
                            emit(node);
                            break;
                        };
                        let at_root = p == 0;
                        let (level, next) = level_at(filter, p);
                        match level {
                            "#" => {
                                // `a/#` also matches `a` itself (the root holds no message).
                                emit(node);
                                if !node.children.is_empty() {
                                    stack.push(Frame::All(node.children.iter(), at_root));
                                }
                                break;
                            }
                            "+" => {
                                if !node.children.is_empty() {
                                    stack.push(Frame::Plus(node.children.iter(), next, at_root));
                                }
                                break;
                            }
                            _ => match node.children.get(level) {
                                Some(child) => {
                                    node = child;
                                    pos = next;
                                }
                                None => break,
                            },
                        }
                    }
                }
            }
        }
    }

    /// Keeps only the messages for which `f` returns true (for expiry sweeps), pruning the
    /// branches left empty.
    pub fn retain(&mut self, mut f: impl FnMut(&str, &M) -> bool) {
        // Collect first, then remove: removal prunes the tree, which a walk in progress
        // cannot do without recursion. A sweep is not on the hot path.
        let mut doomed: Vec<ByteStr> = Vec::new();
        let mut stack: Vec<&Node<M>> = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some(kept) = &node.msg {
                if !f(&kept.0, &kept.1) {
                    doomed.push(kept.0.clone());
                }
            }
            stack.extend(node.children.values());
        }
        for topic in doomed {
            self.remove(&topic);
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of nodes below the root (for tests of pruning).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        crate::level_map::count_nodes(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level_map::test_support::{filter, level_prefixes, topic};
    use proptest::prelude::*;
    use tinsel_codec::topic::matches;

    fn matched(store: &RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        store.for_each_match(filter, |t, m| out.push((t.to_string(), *m)));
        out.sort();
        out
    }

    fn s(v: &[(&str, u32)]) -> Vec<(String, u32)> {
        v.iter().map(|(t, m)| (t.to_string(), *m)).collect()
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut r = RetainedStore::new();
        assert!(r.is_empty());
        assert_eq!(r.insert("a/b", 1), None);
        assert_eq!(r.insert("a/b", 2), Some(1));
        assert_eq!(r.insert("a", 3), None);
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("a/b"), Some(&2));
        assert_eq!(r.get("a/b/c"), None);
        assert_eq!(r.remove("a/b"), Some(2));
        assert_eq!(r.node_count(), 1);
        assert_eq!(r.remove("a/b"), None);
        assert_eq!(r.remove("a"), Some(3));
        assert!(r.is_empty());
        assert_eq!(r.node_count(), 0);
    }

    #[test]
    fn wildcard_lookups() {
        let mut r = RetainedStore::new();
        for (i, t) in ["a", "a/b", "a/b/c", "a/c", "b", "/x", "$SYS/up", "$SYS"]
            .iter()
            .enumerate()
        {
            r.insert(t, i as u32);
        }
        assert_eq!(
            matched(&r, "a/#"),
            s(&[("a", 0), ("a/b", 1), ("a/b/c", 2), ("a/c", 3)])
        );
        assert_eq!(matched(&r, "a/+"), s(&[("a/b", 1), ("a/c", 3)]));
        assert_eq!(matched(&r, "+"), s(&[("a", 0), ("b", 4)]));
        assert_eq!(matched(&r, "+/x"), s(&[("/x", 5)]));
        assert_eq!(matched(&r, "#").len(), 6);
        assert_eq!(matched(&r, "$SYS/#"), s(&[("$SYS", 7), ("$SYS/up", 6)]));
        assert_eq!(matched(&r, "$SYS/+"), s(&[("$SYS/up", 6)]));
        assert_eq!(matched(&r, "a/b/c/#"), s(&[("a/b/c", 2)]));
        assert_eq!(matched(&r, "c/#"), s(&[]));
    }

    #[test]
    fn retain_sweeps_and_prunes() {
        let mut r = RetainedStore::new();
        for i in 0..100u32 {
            r.insert(&format!("x/{}/{}", i % 7, i), i);
        }
        r.retain(|_, m| m % 2 == 0);
        assert_eq!(r.len(), 50);
        assert_eq!(matched(&r, "x/#").len(), 50);
        r.retain(|topic, _| !topic.starts_with("x/3/"));
        assert!(r.get("x/3/10").is_none());
        assert_eq!(r.get("x/4/4"), Some(&4));
        r.retain(|_, _| false);
        assert!(r.is_empty());
        assert_eq!(r.node_count(), 0);
    }

    #[test]
    fn churn_gives_memory_back() {
        let mut r = RetainedStore::new();
        r.insert("churn/keep", 9); // keeps the `churn` node that sees the churn
        for round in 0..3u32 {
            for i in 0..5_000u32 {
                r.insert(&format!("churn/{i}/x"), round);
            }
            assert_eq!(r.len(), 5_001);
            for i in 0..5_000u32 {
                assert_eq!(r.remove(&format!("churn/{i}/x")), Some(round));
            }
            assert_eq!(r.len(), 1);
            assert_eq!(r.node_count(), 2);
        }
        let churn = r.root.children.get("churn").expect("churn node");
        assert!(
            churn.children.capacity() <= 32,
            "{}",
            churn.children.capacity()
        );
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        // 65,001 levels: the longest topic name MQTT allows is 65,535 bytes.
        let deep = "/".repeat(65_000);
        let mut r = RetainedStore::new();
        r.insert(&deep, 1);
        r.insert("a", 2);
        assert_eq!(matched(&r, "#").len(), 2);
        let deep_plus = vec!["+"; 65_001].join("/");
        assert_eq!(matched(&r, &deep_plus), s(&[(&deep, 1)]));
        r.retain(|_, m| *m == 1);
        assert_eq!(r.len(), 1);
        drop(r);
    }

    proptest! {
        #[test]
        fn matches_like_the_reference(
            topics in prop::collection::vec(topic(), 0..30),
            filters in prop::collection::vec(filter(), 1..20),
        ) {
            let mut r = RetainedStore::new();
            for t in &topics {
                r.insert(t, ());
            }
            for filter in &filters {
                let mut got = Vec::new();
                r.for_each_match(filter, |t, _| got.push(t.to_string()));
                got.sort();
                let mut want: Vec<String> =
                    topics.iter().filter(|t| matches(filter, t)).cloned().collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(got, want, "filter {:?}", filter);
            }
        }

        #[test]
        fn insert_remove_retain_like_a_map(
            ops in prop::collection::vec((0u8..5, topic(), any::<u16>()), 0..200),
        ) {
            let mut r = RetainedStore::new();
            let mut model: std::collections::HashMap<String, u16> = std::collections::HashMap::new();
            for (op, t, m) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(r.insert(&t, m), model.insert(t, m)),
                    2 | 3 => prop_assert_eq!(r.remove(&t), model.remove(&t)),
                    _ => {
                        r.retain(|_, v| v % 3 != m % 3);
                        model.retain(|_, v| *v % 3 != m % 3);
                    }
                }
                prop_assert_eq!(r.len(), model.len());
                prop_assert_eq!(r.is_empty(), model.is_empty());
            }
            for (t, m) in &model {
                prop_assert_eq!(r.get(t), Some(m));
            }
            let paths = level_prefixes(model.keys().map(String::as_str));
            prop_assert_eq!(r.node_count(), paths.len());
        }
    }
}

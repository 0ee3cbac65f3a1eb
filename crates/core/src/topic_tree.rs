//! Subscriptions keyed by topic filter levels.
//!
//! [`TopicTree`] stores one value per `(filter, key)` pair — typically the key is a client
//! (or a shared-subscription group member) and the value its subscription options — in a
//! tree with one node per filter level. A node keeps its exact-level children in a hash map
//! and has dedicated slots for the `+` and `#` children, so matching a topic name walks only
//! the branches that can match: at each topic level the exact child, the `+` child and the
//! `#` child.
//!
//! Matching follows MQTT: `+` matches exactly one level, `#` matches its parent level and
//! every level below (so `a/#` matches `a`), empty levels are levels (`/x` is `""`, `"x"`),
//! and a topic that starts with `$` is not matched by a filter whose first level is `+` or
//! `#` [MQTT-4.7.2-1].
//!
//! Filters given to the tree must already be valid (see
//! [`tinsel_codec::topic::valid_topic_filter`]) and must not be shared subscriptions: the
//! caller strips `$share/{group}/` first. The tree does not re-validate them; an invalid
//! filter such as `a/#/b` is stored but never matches the way a valid one would.
//!
//! Nothing here recurses: a peer may send a filter or topic with tens of thousands of
//! levels, and walking, removing and dropping such a branch must not overflow the stack.
//! Matching allocates nothing unless more than 32 branches are pending at once.

use std::hash::Hash;

use crate::level_map::{
    INLINE_FRAMES, InlineStack, LevelNode, level_at, remove_and_prune, shrink_if_sparse,
};

/// Subscriptions keyed by topic filter: one value per `(filter, key)` pair.
pub struct TopicTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

struct Node<K, V> {
    /// Children for exact levels (including the empty level).
    children: crate::FastMap<Box<str>, Node<K, V>>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
    /// The `#` child; it has entries but never children.
    hash: Option<Box<Node<K, V>>>,
    /// Entries whose filter ends at this node.
    entries: crate::FastMap<K, V>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Node {
            children: crate::FastMap::default(),
            plus: None,
            hash: None,
            entries: crate::FastMap::default(),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        match level {
            "+" => self.plus.get_or_insert_with(|| Box::new(Node::new())),
            "#" => self.hash.get_or_insert_with(|| Box::new(Node::new())),
            _ => {
                // Look up first so an existing level costs no allocation.
                if !self.children.contains_key(level) {
                    self.children.insert(level.into(), Node::new());
                }
                self.children
                    .get_mut(level)
                    .expect("child was just looked up or inserted")
            }
        }
    }

    /// Moves every child into `out`, leaving this node without children.
    fn drain_children_into(&mut self, out: &mut Vec<Node<K, V>>) {
        out.extend(self.children.drain().map(|(_, n)| n));
        out.extend(self.plus.take().map(|b| *b));
        out.extend(self.hash.take().map(|b| *b));
    }
}

impl<K, V> LevelNode for Node<K, V> {
    /// Number of child nodes (exact, `+` and `#`).
    fn degree(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }

    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.children.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn take_child(&mut self, level: &str) -> Option<Node<K, V>> {
        match level {
            "+" => self.plus.take().map(|b| *b),
            "#" => self.hash.take().map(|b| *b),
            _ => {
                let child = self.children.remove(level);
                shrink_if_sparse(&mut self.children);
                child
            }
        }
    }

    fn is_bare(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    fn children(&self) -> impl Iterator<Item = &Self> {
        self.children
            .values()
            .chain(self.plus.as_deref())
            .chain(self.hash.as_deref())
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Drops the subtree iteratively: a deep branch would overflow the stack with the
    /// default recursive drop.
    fn drop(&mut self) {
        if self.degree() == 0 {
            return;
        }
        let mut stack = Vec::new();
        self.drain_children_into(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.drain_children_into(&mut stack);
        }
    }
}

impl<K, V> Default for TopicTree<K, V> {
    fn default() -> Self {
        TopicTree {
            root: Node::new(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> TopicTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` for `(filter, key)`; returns the value it replaces, if any.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        let old = node.entries.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry for `(filter, key)` and returns its value; nodes left without
    /// entries and children are removed, so churn does not grow the tree.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let value = remove_and_prune(
            &mut self.root,
            filter,
            |n| n.entries.contains_key(key),
            |n| n.entries.len() == 1 && n.entries.contains_key(key),
            |n| {
                let value = n.entries.remove(key);
                shrink_if_sparse(&mut n.entries);
                value
            },
        );
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    /// The value stored for `(filter, key)`.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        self.find(filter)?.entries.get(key)
    }

    /// The value stored for `(filter, key)`, mutably.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(level)?;
        }
        node.entries.get_mut(key)
    }

    /// Calls `f` for every entry stored under exactly `filter` (no wildcard matching).
    pub fn for_each_in_filter(&self, filter: &str, mut f: impl FnMut(&K, &V)) {
        if let Some(node) = self.find(filter) {
            node.entries.iter().for_each(|(k, v)| f(k, v));
        }
    }

    fn find(&self, filter: &str) -> Option<&Node<K, V>> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.child(level)?;
        }
        Some(node)
    }

    /// Calls `f` for every entry whose filter matches the topic name `topic`. An entry is
    /// visited once per matching filter; the order is unspecified.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        let mut emit = |node: &Node<K, V>| node.entries.iter().for_each(|(k, v)| f(k, v));
        // Each frame is a node reached by matching the topic up to byte `pos` (`None`:
        // the whole topic).
        let mut stack: InlineStack<(&Node<K, V>, Option<usize>), INLINE_FRAMES> =
            InlineStack::new();

        // The root is special: wildcards at the first level do not match `$` topics.
        let (first, rest) = level_at(topic, 0);
        if !topic.starts_with('$') {
            if let Some(h) = &self.root.hash {
                emit(h);
            }
            if let Some(p) = &self.root.plus {
                stack.push((p, rest));
            }
        }
        if let Some(c) = self.root.children.get(first) {
            stack.push((c, rest));
        }

        while let Some((mut node, mut pos)) = stack.pop() {
            // Follow the exact branch in this loop; `+` branches wait on the stack.
            loop {
                if let Some(h) = &node.hash {
                    // `#` matches the remaining levels, and also none (`a/#` matches `a`).
                    emit(h);
                }
                let Some(p) = pos else {
                    emit(node);
                    break;
                };
                let (level, next) = level_at(topic, p);
                if let Some(plus) = &node.plus {
                    stack.push((plus, next));
                }
                match node.children.get(level) {
                    Some(c) => {
                        node = c;
                        pos = next;
                    }
                    None => break,
                }
            }
        }
    }

    /// Number of `(filter, key)` entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the tree holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of nodes below the root (for tests: pruning keeps this proportional to the
    /// number of entries).
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

    fn matched(tree: &TopicTree<u32, &'static str>, topic: &str) -> Vec<(u32, &'static str)> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |k, v| out.push((*k, *v)));
        out.sort();
        out
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut t = TopicTree::new();
        assert!(t.is_empty());
        assert_eq!(t.insert("a/b", 1, "x"), None);
        assert_eq!(t.insert("a/b", 1, "y"), Some("x"));
        assert_eq!(t.insert("a/b", 2, "z"), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a/b", &1), Some(&"y"));
        assert_eq!(t.get("a", &1), None);
        assert_eq!(t.get("a/b/c", &1), None);
        *t.get_mut("a/b", &2).unwrap() = "w";
        assert_eq!(t.remove("a/b", &1), Some("y"));
        assert_eq!(t.remove("a/b", &1), None);
        assert_eq!(t.remove("a/c", &2), None);
        assert_eq!(t.remove("a/b", &2), Some("w"));
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn wildcards() {
        let mut t = TopicTree::new();
        t.insert("a/b/c", 1, "exact");
        t.insert("a/+/c", 2, "plus");
        t.insert("a/#", 3, "hash");
        t.insert("#", 4, "all");
        t.insert("+/+", 5, "two");
        t.insert("+", 6, "one");
        t.insert("$SYS/#", 7, "sys");
        t.insert("/x", 8, "empty first");
        assert_eq!(
            matched(&t, "a/b/c"),
            vec![(1, "exact"), (2, "plus"), (3, "hash"), (4, "all")]
        );
        assert_eq!(matched(&t, "a"), vec![(3, "hash"), (4, "all"), (6, "one")]);
        assert_eq!(
            matched(&t, "a/x"),
            vec![(3, "hash"), (4, "all"), (5, "two")]
        );
        assert_eq!(
            matched(&t, "/x"),
            vec![(4, "all"), (5, "two"), (8, "empty first")]
        );
        assert_eq!(matched(&t, "$SYS/uptime"), vec![(7, "sys")]);
        assert_eq!(matched(&t, "$SYS"), vec![(7, "sys")]);
        assert_eq!(matched(&t, "$other"), vec![]);
    }

    #[test]
    fn pruning_keeps_shared_prefixes() {
        let mut t = TopicTree::new();
        t.insert("a/b/c/d", 1, "");
        t.insert("a/b", 2, "");
        t.insert("a/+/#", 3, "");
        assert_eq!(t.node_count(), 6);
        t.remove("a/b/c/d", &1);
        assert_eq!(t.node_count(), 4);
        t.remove("a/+/#", &3);
        assert_eq!(t.node_count(), 2);
        assert_eq!(t.get("a/b", &2), Some(&""));
        t.remove("a/b", &2);
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn churn_gives_memory_back() {
        let mut t = TopicTree::new();
        // These stay, so the nodes that see the churn stay too.
        t.insert("churn/keep", u32::MAX, 9);
        t.insert("churn/+/x", u32::MAX, 9);
        for round in 0..3 {
            for i in 0..5_000u32 {
                t.insert(&format!("churn/{i}/x"), i % 7, round);
                t.insert("churn/+/x", i, round);
            }
            for i in 0..5_000u32 {
                assert_eq!(t.remove(&format!("churn/{i}/x"), &(i % 7)), Some(round));
                assert_eq!(t.remove("churn/+/x", &i), Some(round));
            }
            assert_eq!(t.len(), 2);
            assert_eq!(t.node_count(), 4);
        }
        let churn = t.root.children.get("churn").expect("churn node");
        assert!(
            churn.children.capacity() <= 32,
            "{}",
            churn.children.capacity()
        );
        let plus = churn.plus.as_ref().and_then(|p| p.children.get("x"));
        let entries = &plus.expect("churn/+/x node").entries;
        assert!(entries.capacity() <= 32, "{}", entries.capacity());
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        let depth = 200_000;
        let deep_plus = vec!["+"; depth + 1].join("/"); // as many levels as `deep_empty`
        let deep_empty = "/".repeat(depth);
        let mut t = TopicTree::new();
        t.insert(&deep_plus, 1, "plus");
        t.insert(&deep_empty, 2, "empty");
        assert_eq!(matched(&t, &deep_empty), vec![(1, "plus"), (2, "empty")]);
        assert_eq!(t.remove(&deep_plus, &1), Some("plus"));
        drop(t); // the deep empty-level branch drops without recursion
    }

    proptest! {
        #[test]
        fn matches_like_the_reference(
            filters in prop::collection::vec(filter(), 0..30),
            topics in prop::collection::vec(topic(), 1..20),
        ) {
            let mut t = TopicTree::new();
            for (i, f) in filters.iter().enumerate() {
                t.insert(f, i, ());
            }
            for topic in &topics {
                let mut got = Vec::new();
                t.for_each_match(topic, |k, _| got.push(*k));
                got.sort();
                let want: Vec<usize> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| matches(f, topic))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(got, want, "topic {:?}", topic);
            }
        }

        #[test]
        fn insert_remove_like_a_map(
            ops in prop::collection::vec((any::<bool>(), filter(), 0u8..4, any::<u16>()), 0..200),
        ) {
            let mut t = TopicTree::new();
            let mut model: std::collections::HashMap<(String, u8), u16> = std::collections::HashMap::new();
            for (insert, f, key, value) in ops {
                if insert {
                    prop_assert_eq!(t.insert(&f, key, value), model.insert((f, key), value));
                } else {
                    prop_assert_eq!(t.remove(&f, &key), model.remove(&(f, key)));
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.is_empty(), model.is_empty());
            }
            for ((f, key), value) in &model {
                prop_assert_eq!(t.get(f, key), Some(value));
            }
            // Every node lies on the path of a stored filter.
            let paths = level_prefixes(model.keys().map(|(f, _)| f.as_str()));
            prop_assert_eq!(t.node_count(), paths.len());
            let keys: Vec<_> = model.keys().cloned().collect();
            for (f, key) in keys {
                prop_assert_eq!(t.remove(&f, &key), model.remove(&(f, key)));
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t.node_count(), 0);
        }
    }
}

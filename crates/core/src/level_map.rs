//! Machinery shared by the two level trees, [`crate::topic_tree`] (subscriptions keyed by
//! filter levels) and [`crate::retained_tree`] (retained messages keyed by topic levels): an
//! inline stack for iterative walks, level splitting, map shrinking, and removal with
//! pruning of the branch a removal leaves empty.
//!
//! Nothing here recurses: a peer may send a topic or filter with tens of thousands of levels.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Pending branches a walk keeps on the call stack before spilling to the heap.
pub(crate) const INLINE_FRAMES: usize = 32;

/// A LIFO stack that keeps its first `N` items inline and spills the rest into a `Vec`, so
/// tree walks allocate nothing in the common case but still have no depth limit.
pub(crate) struct InlineStack<T, const N: usize> {
    inline: [Option<T>; N],
    len: usize,
    /// Items beyond the first `N`; unbounded on purpose: its length is bounded by the depth
    /// (or width) of the tree being walked, which is bounded by what the tree holds.
    spill: Vec<T>,
}

impl<T, const N: usize> InlineStack<T, N> {
    pub(crate) fn new() -> Self {
        InlineStack {
            inline: std::array::from_fn(|_| None),
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = Some(item);
        } else {
            self.spill.push(item);
        }
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        if self.len < N {
            self.inline[self.len].take()
        } else {
            self.spill.pop()
        }
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            None
        } else if self.len <= N {
            self.inline[self.len - 1].as_mut()
        } else {
            self.spill.last_mut()
        }
    }
}

/// Splits the level that starts at byte `pos` of `s` off the rest: returns the level and the
/// start of the next level (`None` when this was the last level).
#[inline]
pub(crate) fn level_at(s: &str, pos: usize) -> (&str, Option<usize>) {
    let rest = &s[pos..];
    match rest.find('/') {
        Some(i) => (&rest[..i], Some(pos + i + 1)),
        None => (rest, None),
    }
}

/// Gives memory back after a map shrank to a quarter of its capacity, so a node that once
/// held many children or entries does not keep the peak allocation forever. Halving the
/// capacity at a quarter keeps the cost amortised.
pub(crate) fn shrink_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 32 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// A node of a tree with one node per topic level, as far as removal and pruning need it.
pub(crate) trait LevelNode: Sized {
    /// The child for `level`.
    fn child(&self, level: &str) -> Option<&Self>;
    /// The child for `level`, mutably.
    fn child_mut(&mut self, level: &str) -> Option<&mut Self>;
    /// Detaches the child for `level`, giving memory back if the children are now sparse.
    fn take_child(&mut self, level: &str) -> Option<Self>;
    /// Number of children.
    fn degree(&self) -> usize;
    /// True if the node itself holds nothing (no entries, no message).
    fn is_bare(&self) -> bool;
    /// Every child, in unspecified order (for tests of pruning).
    #[cfg(test)]
    fn children(&self) -> impl Iterator<Item = &Self>;
}

/// Number of nodes below `root` (for tests: pruning keeps this proportional to what the
/// tree holds).
#[cfg(test)]
pub(crate) fn count_nodes<N: LevelNode>(root: &N) -> usize {
    let mut count = 0;
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        stack.extend(n.children());
        count += 1;
    }
    count - 1
}

/// Removes what `take` takes from the node at `path` (levels separated by `/`) and detaches
/// the nodes that are left without content and children, so churn does not grow the tree.
///
/// `holds(node)` says whether the node holds the thing to remove; `holds_only(node)` whether
/// it holds nothing else. Returns `None`, changing nothing, if the path or the thing is absent.
pub(crate) fn remove_and_prune<N: LevelNode, R>(
    root: &mut N,
    path: &str,
    holds: impl Fn(&N) -> bool,
    holds_only: impl Fn(&N) -> bool,
    take: impl FnOnce(&mut N) -> Option<R>,
) -> Option<R> {
    // First pass, read-only: find the node and the shallowest node from which the whole
    // branch down to it becomes empty once the thing is gone.
    let mut node = &*root;
    let mut prune_from: Option<usize> = None;
    let mut depth = 0;
    let mut levels = path.split('/').peekable();
    while let Some(level) = levels.next() {
        node = node.child(level)?;
        depth += 1;
        let removable = if levels.peek().is_some() {
            node.is_bare() && node.degree() == 1
        } else {
            node.degree() == 0 && holds_only(node)
        };
        if !removable {
            prune_from = None;
        } else if prune_from.is_none() {
            prune_from = Some(depth);
        }
    }
    if !holds(node) {
        return None;
    }

    // Second pass: detach the dead branch (or just take the thing).
    match prune_from {
        Some(prune_depth) => {
            let mut levels = path.split('/');
            let mut parent = root;
            for _ in 1..prune_depth {
                parent = parent.child_mut(levels.next()?)?;
            }
            let mut branch = parent.take_child(levels.next()?)?;
            let mut n = &mut branch;
            for level in levels {
                n = n.child_mut(level)?;
            }
            take(n)
        }
        None => {
            let mut n = root;
            for level in path.split('/') {
                n = n.child_mut(level)?;
            }
            take(n)
        }
    }
}

/// Proptest strategies and checks shared by the trees' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashSet;

    use proptest::prelude::*;

    /// Levels over a small alphabet so that filters and topics collide often.
    pub(crate) fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("$s".to_string()),
            Just("ab".to_string()),
        ]
    }

    /// A valid topic name of one to four levels.
    pub(crate) fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    /// A valid topic filter of one to four levels, with `+` and a trailing `#`.
    pub(crate) fn filter() -> impl Strategy<Value = String> {
        let l = prop_oneof![3 => level(), 2 => Just("+".to_string())];
        (prop::collection::vec(l, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                let last = levels.len() - 1;
                levels[last] = "#".to_string();
            }
            levels.join("/")
        })
    }

    /// Every level prefix of every path (`a/b` gives `a` and `a/b`): the nodes a tree holding
    /// exactly these paths should have below its root.
    pub(crate) fn level_prefixes<'a>(paths: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        let mut prefixes = HashSet::new();
        for p in paths {
            let mut end = 0;
            for level in p.split('/') {
                end += level.len();
                prefixes.insert(p[..end].to_string());
                end += 1;
            }
        }
        prefixes
    }
}

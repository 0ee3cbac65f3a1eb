//! A topic tree of ACL rules, so a decision walks the topic's levels instead of scanning every
//! line of a user's rules.
//!
//! Within one rule list (a user's `topic` lines, or a client's substituted `pattern` lines)
//! Mosquitto's answer does not depend on the order of the lines: it tries every `deny` first,
//! then the grants in file order, and a grant that matches without the requested access does
//! not stop the search. So the answer is "denied if any deny matches, else the union of the
//! matching grants' access", which a tree gives by visiting only the branches that can match:
//! the topic's own level, `+` and `#` at each depth.

use std::collections::HashMap;

/// Access bits: what a rule grants. A deny rule has none.
pub(crate) const READ: u8 = 1;
pub(crate) const WRITE: u8 = 2;

/// What the rules matching one topic say, merged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Some matching rule is a deny.
    pub(crate) deny: bool,
    /// The union of the matching grants' access bits.
    pub(crate) grant: u8,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.deny |= other.deny;
        self.grant |= other.grant;
    }
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Rules whose filter ends in `#` here: they match this level and everything below.
    hash: Outcome,
    /// Rules whose filter ends exactly here.
    end: Outcome,
}

/// Rules indexed by their filters' levels.
#[derive(Debug, Default)]
pub(crate) struct RuleTree {
    root: Node,
}

impl RuleTree {
    /// Adds a rule; `access == 0` is a deny. `filter` must be a valid filter.
    pub(crate) fn insert(&mut self, filter: &str, access: u8) {
        let rule = if access == 0 {
            Outcome {
                deny: true,
                grant: 0,
            }
        } else {
            Outcome {
                deny: false,
                grant: access,
            }
        };
        let mut node = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => {
                    node.hash.merge(rule);
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Default::default),
                lit => node = node.literal.entry(lit.into()).or_default(),
            }
        }
        node.end.merge(rule);
    }

    /// The merged outcome of every rule matching the valid topic name `topic`. Stops early
    /// once a deny is found.
    pub(crate) fn lookup(&self, topic: &str) -> Outcome {
        let mut out = Outcome::default();
        let (first, rest) = split_level(topic);
        let root = &self.root;
        // A `$` topic is matched only by filters whose first level names it literally.
        if !topic.starts_with('$') {
            out.merge(root.hash);
            if let Some(plus) = &root.plus {
                walk(plus, rest, &mut out);
            }
        }
        if let Some(child) = root.literal.get(first) {
            walk(child, rest, &mut out);
        }
        out
    }
}

fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (s, None),
    }
}

/// `node` has matched the levels before `rest`; `rest` is what is left (`None`: nothing).
fn walk(node: &Node, rest: Option<&str>, out: &mut Outcome) {
    if out.deny {
        return;
    }
    out.merge(node.hash);
    let Some(rest) = rest else {
        out.merge(node.end);
        return;
    };
    let (level, tail) = split_level(rest);
    if let Some(child) = node.literal.get(level) {
        walk(child, tail, out);
    }
    if let Some(plus) = &node.plus {
        walk(plus, tail, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_matching_rules() {
        let mut t = RuleTree::default();
        t.insert("a/+", READ);
        t.insert("a/b", WRITE);
        t.insert("a/#", READ);
        t.insert("a/b/c", 0);
        assert_eq!(
            t.lookup("a/b"),
            Outcome {
                deny: false,
                grant: READ | WRITE
            }
        );
        assert_eq!(t.lookup("a").grant, READ);
        assert!(t.lookup("a/b/c").deny);
        assert_eq!(t.lookup("b"), Outcome::default());
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        let mut t = RuleTree::default();
        t.insert("#", READ);
        t.insert("+/x", WRITE);
        assert_eq!(t.lookup("$SYS/x"), Outcome::default());
        t.insert("$SYS/#", READ);
        assert_eq!(t.lookup("$SYS/x").grant, READ);
        assert_eq!(t.lookup("y/x").grant, READ | WRITE);
    }
}

//! A bridge's topics: which local filters it subscribes to, which remote filters it
//! subscribes to, and how a topic is renamed on the way, exactly as Mosquitto does it.
//!
//! A line `topic PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX` gives a local filter
//! `LOCAL_PREFIX + PATTERN` and a remote filter `REMOTE_PREFIX + PATTERN` (a prefix alone
//! when the pattern is empty, written `""`). A message going out whose topic matches the
//! local filter of the first `out`/`both` line that has a prefix loses its local prefix and
//! gains the remote prefix; a message coming in, the other way round with `in`/`both`
//! lines. A message matched by no line with a prefix keeps its topic.

use tinsel_codec::topic::{matches, valid_topic_filter, valid_topic_name};

/// Which way a topic line carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local messages to the remote broker (Mosquitto's default).
    Out,
    /// Remote messages to this broker.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    pub(crate) fn out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    pub(crate) fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    /// Mosquitto's word (case-insensitive there too).
    pub(crate) fn parse(word: &str) -> Option<Direction> {
        match word.to_ascii_lowercase().as_str() {
            "out" => Some(Direction::Out),
            "in" => Some(Direction::In),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }
}

/// One topic line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicRule {
    pub(crate) direction: Direction,
    pub(crate) qos: u8,
    /// The filter subscribed to on this broker (`out`, `both`).
    pub(crate) local: String,
    /// The filter subscribed to on the remote broker (`in`, `both`).
    pub(crate) remote: String,
    local_prefix: Option<String>,
    remote_prefix: Option<String>,
}

impl TopicRule {
    /// Checks a line as Mosquitto does: prefixes are topic names (no wildcards), each
    /// prefix followed by the pattern is a valid filter, and an empty pattern needs both
    /// prefixes. An empty prefix is no prefix.
    pub(crate) fn new(
        pattern: &str,
        direction: Direction,
        qos: u8,
        local_prefix: Option<&str>,
        remote_prefix: Option<&str>,
    ) -> Result<TopicRule, String> {
        if qos > 2 {
            return Err(format!("the QoS of a bridge topic is 0, 1 or 2, not {qos}"));
        }
        let pattern = if pattern == "\"\"" { "" } else { pattern };
        let local_prefix = local_prefix.filter(|p| !p.is_empty() && *p != "\"\"");
        let remote_prefix = remote_prefix.filter(|p| !p.is_empty() && *p != "\"\"");
        for (which, prefix) in [("local", local_prefix), ("remote", remote_prefix)] {
            if let Some(p) = prefix
                && !valid_topic_name(p)
            {
                return Err(format!(
                    "invalid {which} prefix \"{p}\": a prefix is a topic name, without + or #"
                ));
            }
        }
        if pattern.is_empty() && (local_prefix.is_none() || remote_prefix.is_none()) {
            return Err(
                "an empty topic pattern (\"\") needs both a local and a remote \
                        prefix: the prefixes are then the whole topics"
                    .into(),
            );
        }
        let local = format!("{}{pattern}", local_prefix.unwrap_or(""));
        let remote = format!("{}{pattern}", remote_prefix.unwrap_or(""));
        for (which, filter) in [("local", &local), ("remote", &remote)] {
            if !valid_topic_filter(filter) {
                return Err(format!(
                    "the {which} prefix and the pattern make \"{filter}\", which is not a \
                     valid topic filter"
                ));
            }
        }
        Ok(TopicRule {
            direction,
            qos,
            local,
            remote,
            local_prefix: local_prefix.map(str::to_owned),
            remote_prefix: remote_prefix.map(str::to_owned),
        })
    }

    fn remaps(&self) -> bool {
        self.local_prefix.is_some() || self.remote_prefix.is_some()
    }
}

/// `topic` with `from` taken off its front (if it starts with it) and `to` put there.
fn swap(topic: &str, from: Option<&str>, to: Option<&str>) -> String {
    let rest = from.and_then(|f| topic.strip_prefix(f)).unwrap_or(topic);
    format!("{}{rest}", to.unwrap_or(""))
}

/// The topic a local message gets on the remote broker.
pub(crate) fn map_out(rules: &[TopicRule], topic: &str) -> String {
    rules
        .iter()
        .filter(|r| r.direction.out() && r.remaps())
        .find(|r| matches(&r.local, topic))
        .map_or_else(
            || topic.to_owned(),
            |r| swap(topic, r.local_prefix.as_deref(), r.remote_prefix.as_deref()),
        )
}

/// The topic a remote message gets on this broker.
pub(crate) fn map_in(rules: &[TopicRule], topic: &str) -> String {
    rules
        .iter()
        .filter(|r| r.direction.inbound() && r.remaps())
        .find(|r| matches(&r.remote, topic))
        .map_or_else(
            || topic.to_owned(),
            |r| swap(topic, r.remote_prefix.as_deref(), r.local_prefix.as_deref()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str, d: Direction, l: Option<&str>, r: Option<&str>) -> TopicRule {
        TopicRule::new(p, d, 1, l, r).unwrap()
    }

    #[test]
    fn filters_are_prefix_and_pattern() {
        let r = rule(
            "sensors/#",
            Direction::Both,
            Some("site/"),
            Some("hq/site/"),
        );
        assert_eq!(r.local, "site/sensors/#");
        assert_eq!(r.remote, "hq/site/sensors/#");
        let r = rule("\"\"", Direction::In, Some("local/a"), Some("remote/b"));
        assert_eq!(
            (r.local.as_str(), r.remote.as_str()),
            ("local/a", "remote/b")
        );
        let r = rule("#", Direction::Out, None, None);
        assert_eq!((r.local.as_str(), r.remote.as_str()), ("#", "#"));
    }

    #[test]
    fn remapping_as_mosquitto() {
        // The cases of Mosquitto's bridge remapping tests (06-bridge-b2br-remapping,
        // 06-bridge-br2b-remapping): the prefix is swapped, the rest kept.
        let rules = vec![
            rule("#", Direction::Both, None, None),
            rule(
                "prefix/+/#",
                Direction::Out,
                Some("local/"),
                Some("remote/"),
            ),
            rule("b/#", Direction::In, Some("L/"), Some("R/")),
            rule(
                "\"\"",
                Direction::Both,
                Some("exact/local"),
                Some("exact/remote"),
            ),
        ];
        assert_eq!(map_out(&rules, "local/prefix/x/y"), "remote/prefix/x/y");
        assert_eq!(map_out(&rules, "plain/topic"), "plain/topic");
        assert_eq!(map_out(&rules, "exact/local"), "exact/remote");
        assert_eq!(map_in(&rules, "R/b/c"), "L/b/c");
        assert_eq!(map_in(&rules, "R/b"), "L/b");
        assert_eq!(map_in(&rules, "exact/remote"), "exact/local");
        // `out` lines never rename incoming messages.
        assert_eq!(map_in(&rules, "remote/prefix/x/y"), "remote/prefix/x/y");
        // A local prefix alone: removed going out, added coming in.
        let rules = vec![rule("t/#", Direction::Both, Some("here/"), None)];
        assert_eq!(map_out(&rules, "here/t/1"), "t/1");
        assert_eq!(map_in(&rules, "t/1"), "here/t/1");
    }

    #[test]
    fn bad_lines_say_why() {
        let bad = [
            TopicRule::new("\"\"", Direction::Out, 0, Some("a/"), None),
            TopicRule::new("a", Direction::Out, 3, None, None),
            TopicRule::new("a", Direction::Out, 0, Some("x/#/"), None),
            TopicRule::new("a#", Direction::Out, 0, None, None),
            TopicRule::new("#", Direction::Out, 0, Some("x"), None),
        ];
        for b in bad {
            assert!(b.is_err(), "{b:?}");
        }
        // `x#` is not a filter, `x/#` is.
        assert!(TopicRule::new("#", Direction::Out, 0, Some("x/"), None).is_ok());
    }
}

//! Topic names and topic filters: validation and matching.
//!
//! A topic name has no wildcards; a filter may use `+` for one level and `#` for all
//! remaining levels. Topics that start with `$` are not matched by a filter that starts with
//! a wildcard [MQTT-4.7.2-1]. Shared subscriptions are written `$share/{group}/{filter}`.

/// True if `topic` is a valid topic name for PUBLISH: not empty, no `+` or `#`
/// [MQTT-3.3.2-2] [MQTT-4.7.3-1].
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// True if `filter` is a valid topic filter: not empty, `+` alone in its level, `#` alone in
/// the last level [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1]. A shared subscription
/// (`$share/group/filter`) is valid when its group is non-empty without wildcards and its
/// filter is valid.
pub fn valid_topic_filter(filter: &str) -> bool {
    if let Some(rest) = filter.strip_prefix("$share/") {
        return match rest.split_once('/') {
            Some((group, f)) => {
                !group.is_empty() && !group.contains(['+', '#']) && valid_plain_filter(f)
            }
            None => false,
        };
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" => return levels.peek().is_none(),
            "+" => {}
            l if l.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// Splits a shared subscription `$share/{group}/{filter}` into `(group, filter)`;
/// `None` if `filter` is not a shared subscription.
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// True if the (valid, non-shared) `filter` matches the (valid) topic name `topic`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(valid_topic_filter("a/+/c"));
        assert!(valid_topic_filter("#"));
        assert!(valid_topic_filter("a/#"));
        assert!(!valid_topic_filter("a/#/c"));
        assert!(!valid_topic_filter("a+"));
        assert!(!valid_topic_filter(""));
        assert!(valid_topic_filter("$share/g/a/+"));
        assert!(!valid_topic_filter("$share//a"));
        assert!(!valid_topic_filter("$share/g"));
    }

    #[test]
    fn matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("+/+", "/x"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
    }
}

//! Topic filters as ACL files use them: validity, matching a topic name, and the set
//! operations the subscribe decision needs (intersection and containment).
//!
//! Matching follows MQTT and Mosquitto: levels are split at `/`; `+` matches exactly one
//! level (which may be empty); `#`, only as the last level, matches zero or more levels, so
//! `a/#` matches `a`; a topic whose first character is `$` is matched only by a filter whose
//! first character is `$` too, so `#` never matches `$SYS/...`. A topic name that is empty or
//! contains `+` or `#` matches nothing.

/// Mosquitto refuses topics and filters with more than this many `/` separators.
const MAX_SEPARATORS: usize = 200;
/// The longest topic an MQTT string can carry.
const MAX_LEN: usize = 65535;

/// Whether `filter` is a valid subscription filter, as Mosquitto checks ACL lines:
/// `+` and `#` each occupy a whole level, `#` only the last; at most 65,535 bytes and 200 `/`.
/// The empty string is refused.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_LEN || separators(filter) > MAX_SEPARATORS {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "+" => true,
            "#" => last,
            other => !other.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `topic` is a valid topic name to publish to: not empty, no `+` or `#`, at most
/// 65,535 bytes and 200 `/`.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_LEN
        && !topic.contains(['+', '#'])
        && separators(topic) <= MAX_SEPARATORS
}

fn separators(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'/').count()
}

/// Whether the valid filter `filter` matches the topic name `topic`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.is_empty() || filter.is_empty() || topic.contains(['+', '#']) {
        return false;
    }
    if filter.starts_with('$') != topic.starts_with('$') {
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

/// One level of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level<'a> {
    Literal(&'a str),
    Plus,
    Hash,
}

pub(crate) fn levels(filter: &str) -> impl Iterator<Item = Level<'_>> {
    filter.split('/').map(|l| match l {
        "+" => Level::Plus,
        "#" => Level::Hash,
        other => Level::Literal(other),
    })
}

/// Whether the first level is a wildcard: then the filter matches no `$` topic.
fn starts_wild(levels: &[Level<'_>]) -> bool {
    matches!(levels.first(), Some(Level::Plus | Level::Hash))
}

fn starts_dollar(levels: &[Level<'_>]) -> bool {
    matches!(levels.first(), Some(Level::Literal(l)) if l.starts_with('$'))
}

/// The filter matching exactly the topics both `a` and `b` match, or `None` if no topic is
/// matched by both. Both must be valid filters.
pub(crate) fn intersect<'a>(a: &[Level<'a>], b: &[Level<'a>]) -> Option<Vec<Level<'a>>> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Level::Hash), _) => {
                out.extend_from_slice(&b[i..]);
                break;
            }
            (_, Some(Level::Hash)) => {
                out.extend_from_slice(&a[i..]);
                break;
            }
            (None, None) => break,
            (Some(_), None) | (None, Some(_)) => return None,
            (Some(Level::Plus), Some(&x)) | (Some(&x), Some(Level::Plus)) => out.push(x),
            (Some(Level::Literal(x)), Some(Level::Literal(y))) => {
                if x != y {
                    return None;
                }
                out.push(Level::Literal(x));
            }
        }
        i += 1;
    }
    // A `$` topic is matched only by filters that name its first level literally.
    if starts_dollar(&out) && (starts_wild(a) || starts_wild(b)) {
        return None;
    }
    Some(out)
}

/// Whether every topic that `inner` matches is matched by `outer`. Both must be valid.
pub(crate) fn covers(outer: &[Level<'_>], inner: &[Level<'_>]) -> bool {
    if starts_wild(outer) && starts_dollar(inner) {
        return false;
    }
    let mut i = 0;
    loop {
        match (outer.get(i), inner.get(i)) {
            (Some(Level::Hash), _) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(_), Some(Level::Hash)) => return false,
            (Some(Level::Plus), Some(_)) => {}
            (Some(Level::Literal(_)), Some(Level::Plus)) => return false,
            (Some(Level::Literal(x)), Some(Level::Literal(y))) => {
                if x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_as_mosquitto() {
        for ok in [
            "a", "#", "+", "a/+/b", "a/#", "+/+", "/", "$SYS/#", "a b/c", "%c/x",
        ] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "+a/b", "#/a", "a/b+"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
        let deep = "a/".repeat(200) + "a";
        assert!(is_valid_filter(&deep));
        assert!(!is_valid_filter(&("a/".repeat(201) + "a")));
    }

    #[test]
    fn matching_as_mosquitto() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+", "a/"),
            ("+/+", "/"),
            ("#", "/"),
            ("#", "a/b/c"),
            ("a/#", "a"),
            ("a/#", "a/"),
            ("a/+/#", "a/b"),
            ("+", "a"),
            ("$SYS/#", "$SYS/broker/uptime"),
            ("$SYS/#", "$SYS"),
            ("/a", "/a"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b", "a"),
            ("a", "a/b"),
            ("+", "/"),
            ("a/+", "a"),
            ("a/+/#", "a"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("#", ""),
            ("a/#", "a/+"),
            ("#", "a/#"),
            ("a", "A"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }

    fn lv(f: &str) -> Vec<Level<'_>> {
        levels(f).collect()
    }

    fn show(l: &[Level<'_>]) -> String {
        l.iter()
            .map(|l| match l {
                Level::Literal(s) => *s,
                Level::Plus => "+",
                Level::Hash => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn intersections() {
        let cases = [
            ("a/+/#", "+/b", Some("a/b")),
            ("a/#", "#", Some("a/#")),
            ("a/#", "a", Some("a")),
            ("a/+", "a", None),
            ("a/b", "a/c", None),
            ("+/+", "x/#", Some("x/+")),
            ("#", "$SYS/#", None),
            ("$SYS/#", "$SYS/+", Some("$SYS/+")),
            ("+/#", "+", Some("+")),
        ];
        for (a, b, want) in cases {
            let got = intersect(&lv(a), &lv(b)).map(|l| show(&l));
            assert_eq!(got.as_deref(), want, "{a} & {b}");
        }
    }

    #[test]
    fn containment() {
        let cases = [
            ("#", "a/b", true),
            ("#", "$SYS/#", false),
            ("a/#", "a", true),
            ("a/#", "a/+/c", true),
            ("a/+", "a/#", false),
            ("a/+", "a/x", true),
            ("a/x", "a/+", false),
            ("a", "a/#", false),
            ("a/b", "a/b", true),
        ];
        for (outer, inner, want) in cases {
            assert_eq!(
                covers(&lv(outer), &lv(inner)),
                want,
                "{outer} covers {inner}"
            );
        }
    }
}

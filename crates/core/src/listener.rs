//! What a listener asks of the connections it accepted: the MQTT versions it takes, its
//! mount point and the topic aliases its clients may use.
//!
//! The host names the listener of each connection when it registers it
//! ([`crate::Router::accept_on`]); the core keeps one [`ListenerSettings`] per listener in
//! [`crate::Settings::listeners`] and copies what a connection needs into it at accept.
//!
//! A **mount point** (Mosquitto's `mount_point`) puts a listener's clients in a subtree of
//! their own: every topic and filter they send is prefixed with it on the way in (PUBLISH,
//! SUBSCRIBE, UNSUBSCRIBE, the will), and the prefix is removed from what they are sent. A
//! shared subscription keeps its `$share/{group}/` in front of the prefixed filter. The
//! access seam sees the prefixed topics, as Mosquitto's ACL does. A message whose topic
//! is not under the mount point (a session resumed through another listener) is not sent
//! to that client: a client never sees outside its mount point.

use std::borrow::Cow;
use std::sync::Arc;

use tinsel_codec::topic::parse_shared;
use tinsel_codec::{ByteStr, ProtocolVersion};

/// Identifies a listener: its index in the host's configuration (0 when the host has one
/// listener or does not say).
pub type ListenerId = u16;

/// The listener of a connection that came through none of the configured listeners (an
/// in-process link such as a bridge): no listener's settings or per-listener rules apply.
pub const NO_LISTENER: ListenerId = ListenerId::MAX;

/// A set of MQTT protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols(u8);

impl Protocols {
    /// MQTT 3.1, 3.1.1 and 5.0.
    pub const ALL: Protocols = Protocols(0b111);
    /// None.
    pub const NONE: Protocols = Protocols(0);

    fn bit(v: ProtocolVersion) -> u8 {
        match v {
            ProtocolVersion::V31 => 1,
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => 4,
        }
    }

    /// This set and `v`.
    #[must_use]
    pub fn with(self, v: ProtocolVersion) -> Protocols {
        Protocols(self.0 | Protocols::bit(v))
    }

    /// Whether `v` is in the set.
    pub fn allows(self, v: ProtocolVersion) -> bool {
        self.0 & Protocols::bit(v) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for Protocols {
    fn default() -> Protocols {
        Protocols::ALL
    }
}

/// One listener's settings, as the core applies them to its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The protocol versions accepted; a CONNECT of another is refused with CONNACK 0x84
    /// (MQTT 5) or return code 1 (3.1.x). Default: all.
    pub protocols: Protocols,
    /// The topic prefix of its clients (see the module docs). None: no prefix.
    pub mount_point: Option<Arc<str>>,
    /// Topic aliases its MQTT 5 clients may use towards the broker. None:
    /// `limits.topic_alias_maximum`.
    pub max_topic_alias: Option<u16>,
    /// Whether a client may send an empty client id and be given one (Mosquitto's
    /// `allow_zero_length_clientid`). Refused: CONNACK 0x85 (MQTT 5, which Mosquitto
    /// answers with 0x80) or return code 2 (3.1.1).
    pub refuse_empty_client_id: bool,
}

/// `topic` under `mount`: a topic name or a filter (a shared filter keeps its
/// `$share/{group}/` in front). None if the result is longer than an MQTT string can be.
pub(crate) fn mount(mount: &str, topic: &str) -> Option<ByteStr> {
    let mounted = match parse_shared(topic) {
        Some((group, inner)) => format!("$share/{group}/{mount}{inner}"),
        None => format!("{mount}{topic}"),
    };
    ByteStr::try_from(mounted).ok()
}

/// `filter` from a client of a listener with `mount` (as it is without one); None when the
/// mounted filter is too long to be a string.
pub(crate) fn mount_filter<'a>(
    mount: Option<&str>,
    filter: &'a ByteStr,
) -> Option<Cow<'a, ByteStr>> {
    match mount {
        Some(m) => self::mount(m, filter).map(Cow::Owned),
        None => Some(Cow::Borrowed(filter)),
    }
}

/// `topic` as a client under `mount` knows it; None when it is not under the mount point
/// (or is the mount point itself, which would leave no topic).
pub(crate) fn unmount(mount: &str, topic: &ByteStr) -> Option<ByteStr> {
    if topic.len() > mount.len() && topic.as_str().starts_with(mount) {
        ByteStr::from_utf8(topic.as_bytes().slice(mount.len()..))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_and_unmount() {
        assert_eq!(mount("m/", "a/b").unwrap().as_str(), "m/a/b");
        assert_eq!(mount("m/", "#").unwrap().as_str(), "m/#");
        assert_eq!(
            mount("m/", "$share/g/a/+").unwrap().as_str(),
            "$share/g/m/a/+"
        );
        let t = ByteStr::from_static("m/a/b");
        assert_eq!(unmount("m/", &t).unwrap().as_str(), "a/b");
        assert!(unmount("n/", &t).is_none());
        assert!(unmount("m/a/b", &t).is_none());
    }

    #[test]
    fn protocol_sets() {
        let p = Protocols::NONE.with(ProtocolVersion::V5);
        assert!(p.allows(ProtocolVersion::V5));
        assert!(!p.allows(ProtocolVersion::V311));
        assert!(Protocols::default().allows(ProtocolVersion::V31));
        assert!(Protocols::NONE.is_empty());
    }
}

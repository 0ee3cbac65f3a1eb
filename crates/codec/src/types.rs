//! Small value types shared by every packet.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

use crate::DecodeError;

/// The protocol level a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte written in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name written in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes everywhere.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value, `None` for 3 and above.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A UTF-8 string as MQTT defines it: valid UTF-8, no U+0000, at most 65,535 bytes.
///
/// It is a [`Bytes`] underneath (through [`ByteString`], which keeps the UTF-8 check it
/// was built with), so a topic decoded from a read buffer shares that buffer, cloning it
/// never copies, and reading it as a `&str` checks nothing again. The invariant is checked
/// once, when it is built.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ByteStr(ByteString);

/// The MQTT limits a string must also meet besides being UTF-8 [MQTT-1.5.4-2].
fn mqtt_limits_ok(bytes: &[u8]) -> bool {
    bytes.len() <= 65_535 && !bytes.contains(&0)
}

impl ByteStr {
    /// An empty string.
    pub const fn new() -> ByteStr {
        ByteStr(ByteString::new())
    }

    /// A string from a `&'static str`, without copying. Panics on U+0000 or more than
    /// 65,535 bytes: meant for constants.
    pub fn from_static(s: &'static str) -> ByteStr {
        assert!(mqtt_limits_ok(s.as_bytes()), "invalid MQTT string");
        ByteStr(ByteString::from_static(s))
    }

    /// Checks `bytes` and wraps them; `None` if they are not a valid MQTT string
    /// (invalid UTF-8, U+0000, or over 65,535 bytes) [MQTT-1.5.4-1] [MQTT-1.5.4-2].
    pub fn from_utf8(bytes: Bytes) -> Option<ByteStr> {
        if !mqtt_limits_ok(&bytes) {
            return None;
        }
        ByteString::try_from(bytes).ok().map(ByteStr)
    }

    /// A topic name: an MQTT string without the wildcards `+` and `#` [MQTT-3.3.2-2]
    /// (`InvalidString` if it is no MQTT string, `InvalidTopicName` if it holds a
    /// wildcard). One vectorised search for U+0000 and both wildcards: a topic name is read
    /// from every PUBLISH.
    pub(crate) fn topic_name(bytes: Bytes) -> Result<ByteStr, DecodeError> {
        if bytes.len() <= 65_535 && memchr::memchr3(0, b'+', b'#', &bytes).is_none() {
            return ByteString::try_from(bytes)
                .map(ByteStr)
                .map_err(|_| DecodeError::InvalidString);
        }
        // Rare: say which of the two rules it breaks.
        match ByteStr::from_utf8(bytes) {
            Some(_) => Err(DecodeError::InvalidTopicName),
            None => Err(DecodeError::InvalidString),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Consumes the string into its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for ByteStr {
    type Error = crate::EncodeError;
    fn try_from(s: String) -> Result<ByteStr, Self::Error> {
        if !mqtt_limits_ok(s.as_bytes()) {
            return Err(crate::EncodeError::InvalidString);
        }
        Ok(ByteStr(ByteString::from(s)))
    }
}

impl TryFrom<&str> for ByteStr {
    type Error = crate::EncodeError;
    fn try_from(s: &str) -> Result<ByteStr, Self::Error> {
        if !mqtt_limits_ok(s.as_bytes()) {
            return Err(crate::EncodeError::InvalidString);
        }
        Ok(ByteStr(ByteString::from(s)))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

//! What can go wrong turning bytes into packets and back.

use crate::ReasonCode;

/// Why a packet could not be decoded. Every variant is the peer's fault; each maps to the
/// MQTT 5 reason code to send in the DISCONNECT (or CONNACK) that closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining length is longer than four bytes [MQTT-1.5.5-1].
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The packet is larger than the maximum packet size in force; seen from the fixed
    /// header, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Whole packet size, fixed header included.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// First byte names packet type 0 or 15 (AUTH outside MQTT 5).
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved flag bits of the fixed header are not what the specification requires
    /// [MQTT-2.2.2-1].
    #[error("reserved header flags 0x{flags:X} in {packet}")]
    InvalidHeaderFlags {
        /// The packet's name.
        packet: &'static str,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// The body ended before a field did, or a field's length runs past the packet.
    #[error("packet body ended early")]
    UnexpectedEof,
    /// Bytes remain after the last field the packet should hold.
    #[error("{0} bytes left over after the packet's last field")]
    TrailingBytes(usize),
    /// A string is not valid UTF-8 or holds U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2].
    #[error("invalid UTF-8 string")]
    InvalidString,
    /// QoS 3 in a PUBLISH [MQTT-3.3.1-4] or a will [MQTT-3.1.2-12] (in a subscription it is
    /// [`DecodeError::InvalidSubscriptionOptions`]).
    #[error("invalid QoS 3")]
    InvalidQoS,
    /// A packet identifier of 0 where one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// The protocol name is neither `MQTT` nor `MQIsdp` [MQTT-3.1.2-1].
    #[error("unknown protocol name")]
    InvalidProtocolName,
    /// The protocol level is not 3, 4 or 5, or does not match the name [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags are inconsistent (reserved bit set, will flags without a will, password
    /// without user name in 3.1.1) [MQTT-3.1.2-3].
    #[error("invalid CONNECT flags 0x{0:02X}")]
    InvalidConnectFlags(u8),
    /// A topic name contains a wildcard or is empty where that is not allowed [MQTT-3.3.2-2].
    #[error("invalid topic name")]
    InvalidTopicName,
    /// A topic filter is not well formed [MQTT-4.7.1-1] [MQTT-4.7.1-2].
    #[error("invalid topic filter")]
    InvalidTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE without any filter [MQTT-3.8.3-3] [MQTT-3.10.3-2].
    #[error("no topic filters")]
    NoTopicFilters,
    /// Reserved bits of the subscription options are set [MQTT-3.8.3-5].
    #[error("invalid subscription options 0x{0:02X}")]
    InvalidSubscriptionOptions(u8),
    /// An unknown property identifier.
    #[error("unknown property 0x{0:02X}")]
    UnknownProperty(u8),
    /// A property that the packet type does not allow.
    #[error("property 0x{property:02X} not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet's name.
        packet: &'static str,
    },
    /// A property that may appear once appears again.
    #[error("property 0x{0:02X} repeated")]
    DuplicateProperty(u8),
    /// A property has a value the specification forbids (Receive Maximum 0, Maximum Packet
    /// Size 0, Topic Alias 0, Subscription Identifier 0, a flag byte other than 0 or 1, ...).
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// A variable byte integer longer than four bytes, or a length that runs past the
    /// packet.
    #[error("malformed variable byte integer")]
    MalformedVarInt,
    /// A reason code that the packet type does not allow.
    #[error("reason code 0x{0:02X} not allowed here")]
    InvalidReasonCode(u8),
    /// Reserved bits of the CONNACK acknowledge flags are set [MQTT-3.2.2-1], or Session
    /// Present is set with a non-zero reason code [MQTT-3.2.2-4].
    #[error("invalid CONNACK flags 0x{0:02X}")]
    InvalidConnAckFlags(u8),
    /// An MQTT 5 PUBLISH with a zero-length topic name and no Topic Alias
    /// (section 3.3.2.1: a Protocol Error).
    #[error("empty topic name without a topic alias")]
    MissingTopicAlias,
    /// The first packet on a connection must be CONNECT, and only once.
    #[error("expected CONNECT first")]
    ExpectedConnect,
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends when closing a connection for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::InvalidTopicName => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::InvalidTopicFilter => ReasonCode::TOPIC_FILTER_INVALID,
            DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            // "It is a Protocol Error to include ... more than once / the value 0 / a value
            // other than 0 or 1" (MQTT 5 section 3.x.2.2).
            // "A SUBSCRIBE / UNSUBSCRIBE packet with no Payload is a Protocol Error"
            // (sections 3.8.3 and 3.10.3); so is an empty topic without an alias (3.3.2.1).
            DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::NoTopicFilters
            | DecodeError::MissingTopicAlias
            | DecodeError::ExpectedConnect => ReasonCode::PROTOCOL_ERROR,
            // Subscription options: reserved bits set is malformed [MQTT-3.8.3-5]; a
            // Maximum QoS or Retain Handling of 3 is a Protocol Error (section 3.8.3.1).
            DecodeError::InvalidSubscriptionOptions(b) if b & 0xC0 == 0 => {
                ReasonCode::PROTOCOL_ERROR
            }
            // QoS 3 in PUBLISH [MQTT-3.3.1-4] or in a will [MQTT-3.1.2-12] and an identifier
            // not valid for the packet type (section 2.2.2.2) are Malformed Packets.
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded. These are the caller's mistakes: a value that does not
/// fit the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed the largest remaining length (268,435,455 bytes).
    #[error("packet too large to encode")]
    PacketTooLarge,
    /// A string or binary field is over 65,535 bytes, or a string is not valid.
    #[error("string or binary field invalid or longer than 65,535 bytes")]
    InvalidString,
    /// A packet identifier of 0 where one is required.
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// The packet type does not exist in the protocol version (AUTH before MQTT 5).
    #[error("{0} does not exist in this protocol version")]
    NotInVersion(&'static str),
}

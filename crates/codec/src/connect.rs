//! CONNECT: the first packet a client sends.

use bytes::Bytes;

use crate::{ByteStr, Properties, ProtocolVersion, QoS};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol the client speaks; it fixes the version for the whole connection.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1, 3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// The client identifier; may be empty.
    pub client_id: ByteStr,
    /// The will message, if any.
    pub will: Option<Will>,
    /// User name, if any.
    pub username: Option<ByteStr>,
    /// Password, if any (binary data).
    pub password: Option<Bytes>,
}

/// The will message carried by a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic to publish to.
    pub topic: ByteStr,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 will properties (will delay interval, message expiry, content type, ...).
    pub properties: Properties,
}

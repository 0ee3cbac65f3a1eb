//! PUBLISH: an application message, in either direction.

use bytes::Bytes;

use crate::{ByteStr, Properties, QoS};

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this is a redelivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic name; empty only in MQTT 5 when a topic alias stands for it.
    pub topic: ByteStr,
    /// Packet identifier; 0 at QoS 0 (where none is written), never 0 at QoS 1 and 2.
    pub packet_id: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// The payload: a slice of the buffer it was decoded from.
    pub payload: Bytes,
}

//! UNSUBACK.

use crate::{Properties, ReasonCode};

/// An UNSUBACK packet. Before MQTT 5 it carries no reason codes: `reasons` is written
/// only in MQTT 5 and decoded as empty before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// One reason code per filter (MQTT 5).
    pub reasons: Vec<ReasonCode>,
}

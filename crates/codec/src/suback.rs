//! SUBACK: one reason code per requested filter.

use crate::{Properties, ReasonCode};

/// A SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// Granted QoS (0, 1, 2) or a failure code, one per filter in order.
    pub reasons: Vec<ReasonCode>,
}

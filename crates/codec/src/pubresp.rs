//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 acknowledgements.
//!
//! QoS 1: PUBLISH -> PUBACK. QoS 2: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP.

use crate::{Properties, ReasonCode};

/// The body shared by PUBACK, PUBREC, PUBREL and PUBCOMP; [`crate::Packet`] says which.
///
/// In MQTT 5 a reason code of Success with no properties is written in the short form
/// (packet identifier only), as the specification allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// Reason code (always Success before MQTT 5).
    pub reason: ReasonCode,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

impl PubResp {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: u16) -> PubResp {
        PubResp {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

//! UNSUBACK.

use bytes::{BufMut, Bytes};

use crate::primitives::{check_packet_id, finish, read_packet_id};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, ReasonCode};

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

impl UnsubAck {
    pub(crate) fn decode(mut b: Bytes, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let b = &mut b;
        let packet_id = read_packet_id(b)?;
        if !version.is_v5() {
            // 3.1.1: the packet identifier only.
            finish(b)?;
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reasons: Vec::new(),
            });
        }
        let properties = Properties::decode(b, Allowed::UNSUBACK)?;
        // One code per filter, from the table [MQTT-3.11.3-2].
        let reasons = b
            .iter()
            .map(|&c| {
                if ReasonCode::valid_in(c, reason::UNSUBACK) {
                    Ok(ReasonCode(c))
                } else {
                    Err(DecodeError::InvalidReasonCode(c))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        if !version.is_v5() {
            return Ok(2);
        }
        Ok(2 + self.properties.encoded_len(Allowed::UNSUBACK)? + self.reasons.len())
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        dst.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(Allowed::UNSUBACK, dst);
            for r in &self.reasons {
                dst.put_u8(r.0);
            }
        }
    }
}

//! SUBACK: one reason code per requested filter.

use bytes::{BufMut, Bytes};

use crate::primitives::{check_packet_id, read_packet_id};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, ReasonCode};

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

impl SubAck {
    pub(crate) fn decode(mut b: Bytes, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let b = &mut b;
        let packet_id = read_packet_id(b)?;
        let (properties, codes) = if version.is_v5() {
            (Properties::decode(b, Allowed::SUBACK)?, reason::SUBACK)
        } else {
            (Properties::default(), reason::SUBACK_V3)
        };
        // One code per filter, each from the table [MQTT-3.9.3-2] (3.1.1: 0, 1, 2, 0x80).
        let reasons = b
            .iter()
            .map(|&c| {
                if ReasonCode::valid_in(c, codes) {
                    Ok(ReasonCode(c))
                } else {
                    Err(DecodeError::InvalidReasonCode(c))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        let mut n = 2 + self.reasons.len();
        if version.is_v5() {
            n += self.properties.encoded_len(Allowed::SUBACK)?;
        }
        Ok(n)
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        dst.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(Allowed::SUBACK, dst);
        }
        for r in &self.reasons {
            // Before MQTT 5 every failure is 0x80.
            let code = if version.is_v5() || r.0 <= 2 {
                r.0
            } else {
                0x80
            };
            dst.put_u8(code);
        }
    }
}

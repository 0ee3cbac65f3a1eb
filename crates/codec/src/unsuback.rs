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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode, reject, round_trip};
    use crate::{Packet, ProtocolVersion::*};

    #[test]
    fn golden() {
        let p = Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: Properties::default(),
            reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        });
        // 3.1.1: no reason codes.
        assert_eq!(encode(&p, V311), [0xB0, 2, 0, 2]);
        assert_eq!(encode(&p, V5), [0xB0, 5, 0, 2, 0, 0, 0x11]);
        round_trip(&p, V5);
        let v3 = Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: Properties::default(),
            reasons: Vec::new(),
        });
        round_trip(&v3, V311);
        round_trip(&v3, V31);
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        reject(
            &[0xB0, 3, 0, 2, 0],
            V311,
            DecodeError::TrailingBytes(1),
            mal,
        );
        reject(
            &[0xB0, 4, 0, 2, 0, 0x01],
            V5,
            DecodeError::InvalidReasonCode(1),
            mal,
        );
        reject(&[0xB0, 2, 0, 2], V5, DecodeError::UnexpectedEof, mal);
    }
}

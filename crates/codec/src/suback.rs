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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode, reject, round_trip};
    use crate::{ByteStr, Packet, ProtocolVersion::*};

    fn suback(reasons: &[u8]) -> Packet {
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::default(),
            reasons: reasons.iter().map(|&c| ReasonCode(c)).collect(),
        })
    }

    #[test]
    fn golden() {
        let p = suback(&[0, 1, 2, 0x80]);
        assert_eq!(encode(&p, V311), [0x90, 6, 0, 10, 0, 1, 2, 0x80]);
        assert_eq!(encode(&p, V5), [0x90, 7, 0, 10, 0, 0, 1, 2, 0x80]);
        round_trip(&p, V311);
        round_trip(&p, V5);
        let p = suback(&[0x8F, 0x9E, 0xA1, 0xA2, 0x97]);
        round_trip(&p, V5);
        // Before MQTT 5 every failure is 0x80.
        assert_eq!(
            encode(&p, V311),
            [0x90, 7, 0, 10, 0x80, 0x80, 0x80, 0x80, 0x80]
        );
        let Packet::SubAck(mut s) = p else {
            unreachable!()
        };
        s.properties.make_mut().reason_string = Some(ByteStr::from_static("no"));
        round_trip(&Packet::SubAck(s), V5);
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        reject(
            &[0x90, 3, 0, 1, 3],
            V311,
            DecodeError::InvalidReasonCode(3),
            mal,
        );
        // MQTT 5 codes do not exist in 3.1.1.
        reject(
            &[0x90, 3, 0, 1, 0x8F],
            V311,
            DecodeError::InvalidReasonCode(0x8F),
            mal,
        );
        reject(
            &[0x90, 4, 0, 1, 0, 0x11],
            V5,
            DecodeError::InvalidReasonCode(0x11),
            mal,
        );
        reject(&[0x90, 3, 0, 0, 0], V311, DecodeError::ZeroPacketId, mal);
        reject(
            &[0x91, 3, 0, 1, 0],
            V311,
            DecodeError::InvalidHeaderFlags {
                packet: "SUBACK",
                flags: 1,
            },
            mal,
        );
    }
}

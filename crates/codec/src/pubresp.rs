//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 acknowledgements.
//!
//! QoS 1: PUBLISH -> PUBACK. QoS 2: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP.

use bytes::{BufMut, Bytes};

use crate::primitives::{check_packet_id, finish, read_packet_id, read_u8, varint_len};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

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

/// Which acknowledgement a [`PubResp`] is: its property set and reason code table.
fn rules(kind: PacketType) -> (Allowed, &'static [u8]) {
    match kind {
        PacketType::PubAck => (Allowed::PUBACK, reason::PUBACK),
        PacketType::PubRec => (Allowed::PUBREC, reason::PUBACK),
        PacketType::PubRel => (Allowed::PUBREL, reason::PUBREL),
        _ => (Allowed::PUBCOMP, reason::PUBREL),
    }
}

impl PubResp {
    pub(crate) fn decode(
        kind: PacketType,
        mut b: Bytes,
        version: ProtocolVersion,
    ) -> Result<PubResp, DecodeError> {
        let b = &mut b;
        // [MQTT-2.2.1-3]: a non-zero packet identifier.
        let packet_id = read_packet_id(b)?;
        let mut resp = PubResp::new(packet_id);
        if version.is_v5() {
            let (allowed, codes) = rules(kind);
            // Remaining length 2: Success, no properties. Below 4: no property length
            // (sections 3.4.2.1, 3.4.2.2 and their PUBREC/PUBREL/PUBCOMP twins).
            if !b.is_empty() {
                let code = read_u8(b)?;
                if !ReasonCode::valid_in(code, codes) {
                    return Err(DecodeError::InvalidReasonCode(code));
                }
                resp.reason = ReasonCode(code);
                if !b.is_empty() {
                    resp.properties = Properties::decode(b, allowed)?;
                }
            }
        }
        finish(b)?;
        Ok(resp)
    }

    pub(crate) fn body_len(
        &self,
        kind: PacketType,
        version: ProtocolVersion,
    ) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        if !version.is_v5() {
            return Ok(2);
        }
        let (allowed, _) = rules(kind);
        let props = self.properties.body_len(allowed)?;
        Ok(match (self.reason, props) {
            (ReasonCode::SUCCESS, 0) => 2,
            (_, 0) => 3,
            (_, n) => 3 + varint_len(n as u32) + n,
        })
    }

    pub(crate) fn encode(&self, kind: PacketType, version: ProtocolVersion, dst: &mut impl BufMut) {
        dst.put_u16(self.packet_id);
        if !version.is_v5() {
            return;
        }
        let (allowed, _) = rules(kind);
        // The short forms: nothing after the identifier for Success without properties, no
        // property length when there are none.
        match (self.reason, self.properties.body_len(allowed).unwrap_or(0)) {
            (ReasonCode::SUCCESS, 0) => {}
            (r, 0) => dst.put_u8(r.0),
            (r, _) => {
                dst.put_u8(r.0);
                self.properties.encode(allowed, dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{ByteStr, Packet, ProtocolVersion::*};

    fn all(r: PubResp) -> [Packet; 4] {
        [
            Packet::PubAck(r.clone()),
            Packet::PubRec(r.clone()),
            Packet::PubRel(r.clone()),
            Packet::PubComp(r),
        ]
    }

    #[test]
    fn golden_short_forms() {
        for (p, first) in all(PubResp::new(0x1234))
            .iter()
            .zip([0x40, 0x50, 0x62, 0x70])
        {
            // Identifier only, in every version (MQTT 5: Success without properties).
            for v in [V31, V311, V5] {
                assert_eq!(encode(p, v), [first, 2, 0x12, 0x34]);
                round_trip(p, v);
            }
            // A reason code without a property length decodes too.
            assert_eq!(&decode(&[first, 3, 0x12, 0x34, 0], V5).unwrap(), p);
            assert_eq!(&decode(&[first, 4, 0x12, 0x34, 0, 0], V5).unwrap(), p);
        }
    }

    #[test]
    fn reasons_and_properties() {
        let mut r = PubResp::new(7);
        r.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        let p = Packet::PubRel(r.clone());
        assert_eq!(encode(&p, V5), [0x62, 3, 0, 7, 0x92]);
        round_trip(&p, V5);
        // 3.1.1 drops what it cannot say.
        assert_eq!(encode(&p, V311), [0x62, 2, 0, 7]);
        r.properties.make_mut().reason_string = Some(ByteStr::from_static("x"));
        let p = Packet::PubComp(r);
        assert_eq!(encode(&p, V5), [0x70, 8, 0, 7, 0x92, 4, 0x1F, 0, 1, b'x']);
        round_trip(&p, V5);
        let mut r = PubResp::new(7);
        r.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        round_trip(&Packet::PubAck(r.clone()), V5);
        round_trip(&Packet::PubRec(r), V5);
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        // Packet identifier 0 [MQTT-2.2.1-3].
        reject(&[0x40, 2, 0, 0], V311, DecodeError::ZeroPacketId, mal);
        // PUBREL flags must be 0010 [MQTT-3.6.1-1]; PUBACK's 0000 [MQTT-2.2.2-1].
        reject(
            &[0x60, 2, 0, 1],
            V311,
            DecodeError::InvalidHeaderFlags {
                packet: "PUBREL",
                flags: 0,
            },
            mal,
        );
        reject(
            &[0x42, 2, 0, 1],
            V311,
            DecodeError::InvalidHeaderFlags {
                packet: "PUBACK",
                flags: 2,
            },
            mal,
        );
        // 3.1.1: exactly two bytes.
        reject(
            &[0x40, 3, 0, 1, 0],
            V311,
            DecodeError::TrailingBytes(1),
            mal,
        );
        reject(&[0x40, 1, 0], V311, DecodeError::UnexpectedEof, mal);
        // Reason codes outside each table.
        reject(
            &[0x40, 3, 0, 1, 0x92],
            V5,
            DecodeError::InvalidReasonCode(0x92),
            mal,
        );
        reject(
            &[0x62, 3, 0, 1, 0x10],
            V5,
            DecodeError::InvalidReasonCode(0x10),
            mal,
        );
        // A property acknowledgements do not allow.
        reject(
            &[0x40, 6, 0, 1, 0, 2, 0x23, 1],
            V5,
            DecodeError::PropertyNotAllowed {
                property: 0x23,
                packet: "PUBACK",
            },
            mal,
        );
        // Reason string twice.
        reject(
            &[0x50, 10, 0, 1, 0, 6, 0x1F, 0, 0, 0x1F, 0, 0],
            V5,
            DecodeError::DuplicateProperty(0x1F),
            ReasonCode::PROTOCOL_ERROR,
        );
    }
}

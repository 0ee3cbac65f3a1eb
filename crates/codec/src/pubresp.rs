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

//! DISCONNECT: in MQTT 5 either side may send it, with a reason.

use bytes::{BufMut, Bytes};

use crate::primitives::{finish, read_u8, varint_len};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, ReasonCode};

/// A DISCONNECT packet. Before MQTT 5 it has no body: only a client sends it, and
/// `reason` and `properties` are neither written nor read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code.
    pub reason: ReasonCode,
    /// MQTT 5 properties (session expiry interval, reason string, server reference, ...).
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        mut b: Bytes,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        let b = &mut b;
        let mut d = Disconnect::default();
        // MQTT 5: remaining length 0 means Normal disconnection; below 2 there is no
        // property length (sections 3.14.2.1, 3.14.2.2). Before MQTT 5 there is no body.
        if version.is_v5() && !b.is_empty() {
            let code = read_u8(b)?;
            if !ReasonCode::valid_in(code, reason::DISCONNECT) {
                return Err(DecodeError::InvalidReasonCode(code));
            }
            d.reason = ReasonCode(code);
            if !b.is_empty() {
                d.properties = Properties::decode(b, Allowed::DISCONNECT)?;
            }
        }
        finish(b)?;
        Ok(d)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(0);
        }
        let props = self.properties.body_len(Allowed::DISCONNECT)?;
        Ok(match (self.reason, props) {
            (ReasonCode::SUCCESS, 0) => 0,
            (_, 0) => 1,
            (_, n) => 1 + varint_len(n as u32) + n,
        })
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        if !version.is_v5() {
            return;
        }
        match (
            self.reason,
            self.properties.body_len(Allowed::DISCONNECT).unwrap_or(0),
        ) {
            (ReasonCode::SUCCESS, 0) => {}
            (r, 0) => dst.put_u8(r.0),
            (r, _) => {
                dst.put_u8(r.0);
                self.properties.encode(Allowed::DISCONNECT, dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{ByteStr, Packet, ProtocolVersion::*};

    #[test]
    fn golden_short_forms() {
        let normal = Packet::Disconnect(Disconnect::default());
        for v in [V31, V311, V5] {
            assert_eq!(encode(&normal, v), [0xE0, 0]);
            round_trip(&normal, v);
        }
        let will = Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL));
        assert_eq!(encode(&will, V5), [0xE0, 1, 4]);
        assert_eq!(encode(&will, V311), [0xE0, 0]);
        round_trip(&will, V5);
        assert_eq!(decode(&[0xE0, 2, 0, 0], V5).unwrap(), normal);
        let mut d = Disconnect::new(ReasonCode::SERVER_MOVED);
        d.properties.make_mut().server_reference = Some(ByteStr::from_static("elsewhere"));
        d.properties.make_mut().session_expiry_interval = Some(0);
        round_trip(&Packet::Disconnect(d), V5);
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        // No body before MQTT 5.
        reject(&[0xE0, 1, 0], V311, DecodeError::TrailingBytes(1), mal);
        reject(&[0xE0, 1, 0x01], V5, DecodeError::InvalidReasonCode(1), mal);
        reject(
            &[0xE1, 0],
            V5,
            DecodeError::InvalidHeaderFlags {
                packet: "DISCONNECT",
                flags: 1,
            },
            mal,
        );
        reject(
            &[0xE0, 4, 0x80, 2, 0x1F, 0],
            V5,
            DecodeError::UnexpectedEof,
            mal,
        );
        reject(
            &[0xE0, 5, 0x80, 3, 0x21, 0, 1],
            V5,
            DecodeError::PropertyNotAllowed {
                property: 0x21,
                packet: "DISCONNECT",
            },
            mal,
        );
    }
}

//! AUTH: MQTT 5 extended authentication exchange.

use bytes::{BufMut, Bytes};

use crate::primitives::{finish, read_u8};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, Properties, ReasonCode};

/// An AUTH packet (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Reason code: Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Properties (authentication method and data, reason string, user properties).
    pub properties: Properties,
}

impl Auth {
    /// Decodes an AUTH body (MQTT 5 only; the caller has checked the version).
    pub(crate) fn decode(mut b: Bytes) -> Result<Auth, DecodeError> {
        let b = &mut b;
        let mut a = Auth::default();
        // Remaining length 0: Success without properties (section 3.15.2.1). A lone reason
        // code without a property length is accepted too, as for DISCONNECT.
        if !b.is_empty() {
            let code = read_u8(b)?;
            // [MQTT-3.15.2-1]: Success, Continue authentication or Re-authenticate.
            if !ReasonCode::valid_in(code, reason::AUTH) {
                return Err(DecodeError::InvalidReasonCode(code));
            }
            a.reason = ReasonCode(code);
            if !b.is_empty() {
                a.properties = Properties::decode(b, Allowed::AUTH)?;
            }
        }
        finish(b)?;
        Ok(a)
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.reason == ReasonCode::SUCCESS && self.properties.body_len(Allowed::AUTH)? == 0 {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len(Allowed::AUTH)?)
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        if self.reason == ReasonCode::SUCCESS
            && self.properties.body_len(Allowed::AUTH).unwrap_or(0) == 0
        {
            return;
        }
        dst.put_u8(self.reason.0);
        self.properties.encode(Allowed::AUTH, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{ByteStr, EncodeError, Packet, ProtocolVersion::*};

    #[test]
    fn golden() {
        let ok = Packet::Auth(Auth::default());
        assert_eq!(encode(&ok, V5), [0xF0, 0]);
        round_trip(&ok, V5);
        let mut a = Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties::default(),
        };
        a.properties.make_mut().authentication_method = Some(ByteStr::from_static("M"));
        a.properties.make_mut().authentication_data = Some(Bytes::from_static(b"\x01"));
        let p = Packet::Auth(a);
        assert_eq!(
            encode(&p, V5),
            [0xF0, 10, 0x18, 8, 0x15, 0, 1, b'M', 0x16, 0, 1, 1]
        );
        round_trip(&p, V5);
        assert_eq!(
            decode(&[0xF0, 1, 0x19], V5).unwrap(),
            Packet::Auth(Auth {
                reason: ReasonCode::RE_AUTHENTICATE,
                properties: Properties::default(),
            })
        );
    }

    #[test]
    fn only_in_v5() {
        let mal = ReasonCode::MALFORMED_PACKET;
        reject(&[0xF0, 0], V311, DecodeError::InvalidPacketType(15), mal);
        reject(&[0xF0, 0], V31, DecodeError::InvalidPacketType(15), mal);
        let mut buf = bytes::BytesMut::new();
        assert_eq!(
            crate::encode_packet(&Packet::Auth(Auth::default()), V311, &mut buf),
            Err(EncodeError::NotInVersion("AUTH"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        reject(
            &[0xF0, 1, 0x80],
            V5,
            DecodeError::InvalidReasonCode(0x80),
            mal,
        );
        reject(
            &[0xF0, 4, 0x18, 2, 0x11, 0],
            V5,
            DecodeError::PropertyNotAllowed {
                property: 0x11,
                packet: "AUTH",
            },
            mal,
        );
    }
}

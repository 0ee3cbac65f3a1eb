//! CONNACK: the server's answer to CONNECT.

use bytes::{BufMut, Bytes};

use crate::primitives::{finish, read_u8};
use crate::properties::Allowed;
use crate::reason;
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, ReasonCode};

/// A CONNACK packet. In 3.1 and 3.1.1 the return code is mapped to and from a
/// [`ReasonCode`] (see its docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Reason code (return code before MQTT 5).
    pub reason: ReasonCode,
    /// MQTT 5 properties.
    pub properties: Properties,
}

impl ConnAck {
    /// A CONNACK with `reason` and no properties.
    pub fn new(session_present: bool, reason: ReasonCode) -> ConnAck {
        ConnAck {
            session_present,
            reason,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(mut b: Bytes, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let b = &mut b;
        let ack_flags = read_u8(b)?;
        let code = read_u8(b)?;
        let (session_present, reason) = if version == ProtocolVersion::V31 {
            // 3.1 has no Session Present: the first byte is reserved and ignored.
            let reason =
                ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode(code))?;
            (false, reason)
        } else {
            // Bits 7-1 of the acknowledge flags are reserved [MQTT-3.2.2-1].
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnAckFlags(ack_flags));
            }
            let reason = if version.is_v5() {
                if !ReasonCode::valid_in(code, reason::CONNACK) {
                    return Err(DecodeError::InvalidReasonCode(code));
                }
                ReasonCode(code)
            } else {
                ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode(code))?
            };
            let session_present = ack_flags & 0x01 != 0;
            // A refused connection never has a session [MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6]).
            if session_present && reason != ReasonCode::SUCCESS {
                return Err(DecodeError::InvalidConnAckFlags(ack_flags));
            }
            (session_present, reason)
        };
        let properties = if version.is_v5() {
            Properties::decode(b, Allowed::CONNACK)?
        } else {
            Properties::default()
        };
        finish(b)?;
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(2 + if version.is_v5() {
            self.properties.encoded_len(Allowed::CONNACK)?
        } else {
            0
        })
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        let code = if version.is_v5() {
            self.reason.0
        } else {
            self.reason.to_v3_connack()
        };
        let session_present = self.session_present && code == 0 && version != ProtocolVersion::V31;
        dst.put_u8(u8::from(session_present));
        dst.put_u8(code);
        if version.is_v5() {
            self.properties.encode(Allowed::CONNACK, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{Packet, ProtocolVersion::*};

    #[test]
    fn golden() {
        let ok = Packet::ConnAck(ConnAck::new(true, ReasonCode::SUCCESS));
        assert_eq!(encode(&ok, V311), [0x20, 2, 1, 0]);
        // 3.1 has no Session Present.
        assert_eq!(encode(&ok, V31), [0x20, 2, 0, 0]);
        // MQTT 5: property length 0.
        assert_eq!(encode(&ok, V5), [0x20, 3, 1, 0, 0]);
        round_trip(&ok, V311);
        round_trip(&ok, V5);
        // 3.1.1 return code 5 is Not authorized.
        let p = decode(&[0x20, 2, 0, 5], V311).unwrap();
        assert_eq!(
            p,
            Packet::ConnAck(ConnAck::new(false, ReasonCode::NOT_AUTHORIZED))
        );
        assert_eq!(encode(&p, V311), [0x20, 2, 0, 5]);
        assert_eq!(encode(&p, V5), [0x20, 3, 0, 0x87, 0]);
    }

    #[test]
    fn v3_return_codes_map_both_ways() {
        for code in 0..=5u8 {
            let r = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(r.to_v3_connack(), code);
            let p = Packet::ConnAck(ConnAck::new(false, r));
            assert_eq!(encode(&p, V311), [0x20, 2, 0, code]);
            round_trip(&p, V311);
            round_trip(&p, V31);
        }
        assert_eq!(ReasonCode::BANNED.to_v3_connack(), 5);
        assert_eq!(ReasonCode::SERVER_BUSY.to_v3_connack(), 3);
        assert_eq!(ReasonCode::from_v3_connack(6), None);
    }

    #[test]
    fn all_properties_round_trip() {
        let mut c = ConnAck::new(false, ReasonCode::SUCCESS);
        let p = c.properties.make_mut();
        p.session_expiry_interval = Some(1);
        p.assigned_client_identifier = Some(crate::ByteStr::from_static("auto-1"));
        p.server_keep_alive = Some(30);
        p.authentication_method = Some(crate::ByteStr::from_static("m"));
        p.authentication_data = Some(Bytes::from_static(b"d"));
        p.response_information = Some(crate::ByteStr::from_static("ri"));
        p.server_reference = Some(crate::ByteStr::from_static("other"));
        p.reason_string = Some(crate::ByteStr::from_static("why"));
        p.receive_maximum = Some(65_535);
        p.topic_alias_maximum = Some(0);
        p.maximum_qos = Some(1);
        p.retain_available = Some(0);
        p.user_properties.push((
            crate::ByteStr::from_static("k"),
            crate::ByteStr::from_static("v"),
        ));
        p.maximum_packet_size = Some(u32::MAX);
        p.wildcard_subscription_available = Some(1);
        p.subscription_identifier_available = Some(0);
        p.shared_subscription_available = Some(1);
        round_trip(&Packet::ConnAck(c), V5);
    }

    #[test]
    fn malformed() {
        let mal = ReasonCode::MALFORMED_PACKET;
        // Reserved acknowledge flag bits [MQTT-3.2.2-1].
        reject(
            &[0x20, 2, 2, 0],
            V311,
            DecodeError::InvalidConnAckFlags(2),
            mal,
        );
        // Session Present with a refusal [MQTT-3.2.2-4].
        reject(
            &[0x20, 2, 1, 5],
            V311,
            DecodeError::InvalidConnAckFlags(1),
            mal,
        );
        reject(
            &[0x20, 3, 1, 0x87, 0],
            V5,
            DecodeError::InvalidConnAckFlags(1),
            mal,
        );
        // Unknown return code.
        reject(
            &[0x20, 2, 0, 6],
            V311,
            DecodeError::InvalidReasonCode(6),
            mal,
        );
        // A reason code CONNACK does not use.
        reject(
            &[0x20, 3, 0, 0x8B, 0],
            V5,
            DecodeError::InvalidReasonCode(0x8B),
            mal,
        );
        // Truncated, trailing.
        reject(&[0x20, 1, 0], V311, DecodeError::UnexpectedEof, mal);
        reject(
            &[0x20, 3, 0, 0, 0],
            V311,
            DecodeError::TrailingBytes(1),
            mal,
        );
        // MQTT 5 needs the property length.
        reject(&[0x20, 2, 0, 0], V5, DecodeError::UnexpectedEof, mal);
        // Properties that may appear once, flags that must be 0 or 1.
        let proto = ReasonCode::PROTOCOL_ERROR;
        reject(
            &[0x20, 5, 0, 0, 2, 0x24, 2],
            V5,
            DecodeError::InvalidPropertyValue(0x24),
            proto,
        );
        reject(
            &[0x20, 5, 0, 0, 2, 0x25, 2],
            V5,
            DecodeError::InvalidPropertyValue(0x25),
            proto,
        );
        reject(
            &[0x20, 7, 0, 0, 4, 0x28, 1, 0x28, 1],
            V5,
            DecodeError::DuplicateProperty(0x28),
            proto,
        );
        // Session expiry is allowed, will delay is not.
        reject(
            &[0x20, 8, 0, 0, 5, 0x18, 0, 0, 0, 1],
            V5,
            DecodeError::PropertyNotAllowed {
                property: 0x18,
                packet: "CONNACK",
            },
            mal,
        );
    }
}

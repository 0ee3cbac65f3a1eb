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

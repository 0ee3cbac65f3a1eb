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

//! AUTH: MQTT 5 extended authentication exchange.

use crate::{Properties, ReasonCode};

/// An AUTH packet (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Reason code: Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Properties (authentication method and data, reason string, user properties).
    pub properties: Properties,
}

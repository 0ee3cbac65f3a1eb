//! CONNACK: the server's answer to CONNECT.

use crate::{Properties, ReasonCode};

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

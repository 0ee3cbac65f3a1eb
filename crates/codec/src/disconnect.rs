//! DISCONNECT: in MQTT 5 either side may send it, with a reason.

use crate::{Properties, ReasonCode};

/// A DISCONNECT packet. Before MQTT 5 it has no body: only a client sends it, and
/// `reason` and `properties` are neither written nor read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code.
    pub reason: ReasonCode,
    /// MQTT 5 properties (session expiry interval, reason string, server reference, ...).
    pub properties: Properties,
}

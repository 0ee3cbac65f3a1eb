//! UNSUBSCRIBE.

use crate::{ByteStr, Properties};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// MQTT 5 properties (user properties).
    pub properties: Properties,
    /// Topic filters; at least one.
    pub filters: Vec<ByteStr>,
}

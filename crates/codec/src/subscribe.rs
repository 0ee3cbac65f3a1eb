//! SUBSCRIBE: topic filters with their options.

use crate::{ByteStr, Properties, QoS};

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// MQTT 5 properties (subscription identifier, user properties).
    pub properties: Properties,
    /// Topic filters, each with its options; at least one.
    pub filters: Vec<(ByteStr, SubscriptionOptions)>,
}

/// When the server sends retained messages on subscribe (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send them only if the subscription did not already exist.
    SendIfNew,
    /// 2: do not send them.
    DoNotSend,
}

/// Subscription options. Before MQTT 5 only `qos` is written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not send the client's own messages back to it.
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

//! MQTT 5 properties: one struct for every packet type.
//!
//! Each packet type allows its own subset; decoding rejects a property the packet does not
//! allow, and one repeated that may appear once. Encoding writes what is set. Before
//! MQTT 5 properties are neither read nor written.

use bytes::Bytes;

use crate::ByteStr;

/// A user property: a name/value pair that may repeat, order preserved.
pub type UserProperty = (ByteStr, ByteStr);

/// The MQTT 5 properties of a packet. `None` (or empty) means absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01 Payload Format Indicator (PUBLISH, will): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    pub content_type: Option<ByteStr>,
    /// 0x08 Response Topic (PUBLISH, will).
    pub response_topic: Option<ByteStr>,
    /// 0x09 Correlation Data (PUBLISH, will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier: at most one in SUBSCRIBE, any number in PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<ByteStr>,
    /// 0x13 Server Keep Alive (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<ByteStr>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (CONNECT).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval in seconds (will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<ByteStr>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<ByteStr>,
    /// 0x1F Reason String (every acknowledgement, DISCONNECT, AUTH).
    pub reason_string: Option<ByteStr>,
    /// 0x21 Receive Maximum (CONNECT, CONNACK); never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (PUBLISH); never 0.
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (CONNACK): 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (CONNACK).
    pub retain_available: Option<u8>,
    /// 0x26 User Property (every packet with properties); may repeat.
    pub user_properties: Vec<UserProperty>,
    /// 0x27 Maximum Packet Size (CONNECT, CONNACK); never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (CONNACK).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (CONNACK).
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

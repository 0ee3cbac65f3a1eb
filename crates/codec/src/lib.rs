//! MQTT 3.1, 3.1.1 and 5.0 control packets: one packet model, encode and decode.
//!
//! This crate performs no I/O, spawns nothing and reads no clock. It turns bytes into
//! [`Packet`]s and back, and rejects what the specifications call malformed with the
//! MQTT 5 reason code that fits ([`DecodeError::reason_code`]).
//!
//! The protocol version decides what is written and what is accepted; there is one
//! packet model for all three versions. Payloads and topics are [`bytes::Bytes`] slices of
//! the buffer they were decoded from: decoding copies no payload.
//!
//! Decoding is two steps: [`check_frame`] reads the fixed header and applies the size
//! limit before the body is buffered, then [`decode_packet`] (or [`decode_body`]) parses the
//! whole packet without re-scanning. [`encode_packet`] writes a packet; [`EncodedPublish`]
//! encodes a PUBLISH once for many subscribers that differ only in packet identifier.
//!
//! # Decoding a stream
//!
//! ```
//! use bytes::BytesMut;
//! use tinsel_codec::{decode_packet, Packet, ProtocolVersion};
//!
//! let mut buf = BytesMut::from(&[0xC0u8, 0x00][..]); // PINGREQ
//! let packet = decode_packet(&mut buf, ProtocolVersion::V311, 1024).unwrap();
//! assert_eq!(packet, Some(Packet::PingReq));
//! ```

mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod packet;
mod primitives;
mod properties;
#[cfg(test)]
mod proptests;
mod publish;
mod pubresp;
mod reason;
mod suback;
mod subscribe;
#[cfg(test)]
mod test_util;
pub mod topic;
mod types;
mod unsuback;
mod unsubscribe;

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    FixedHeader, Packet, PacketType, check_frame, decode_body, decode_packet, encode_packet,
};
pub use properties::{Properties, PropertyValues, UserProperty};
pub use publish::{EncodedPublish, Publish};
pub use pubresp::PubResp;
pub use reason::ReasonCode;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use types::{ByteStr, ProtocolVersion, QoS};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

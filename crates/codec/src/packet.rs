//! The packet enum, the fixed header, and the stream entry points.

use bytes::BytesMut;

use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError, ProtocolVersion, PubResp,
    Publish, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

/// The control packet type: the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 1
    Connect = 1,
    /// 2
    ConnAck = 2,
    /// 3
    Publish = 3,
    /// 4
    PubAck = 4,
    /// 5
    PubRec = 5,
    /// 6
    PubRel = 6,
    /// 7
    PubComp = 7,
    /// 8
    Subscribe = 8,
    /// 9
    SubAck = 9,
    /// 10
    Unsubscribe = 10,
    /// 11
    UnsubAck = 11,
    /// 12
    PingReq = 12,
    /// 13
    PingResp = 13,
    /// 14
    Disconnect = 14,
    /// 15 (MQTT 5 only)
    Auth = 15,
}

/// A parsed fixed header: what [`check_frame`] returns once a whole packet is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Remaining length: the size of the body.
    pub remaining_length: u32,
    /// Size of the fixed header itself (2 to 5 bytes).
    pub header_len: usize,
}

impl FixedHeader {
    /// Whole packet size: fixed header plus body.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_length as usize
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: with its will it carries two property sets)
    Connect(Box<Connect>),
    /// CONNACK
    ConnAck(ConnAck),
    /// PUBLISH
    Publish(Publish),
    /// PUBACK
    PubAck(PubResp),
    /// PUBREC
    PubRec(PubResp),
    /// PUBREL
    PubRel(PubResp),
    /// PUBCOMP
    PubComp(PubResp),
    /// SUBSCRIBE
    Subscribe(Subscribe),
    /// SUBACK
    SubAck(SubAck),
    /// UNSUBSCRIBE
    Unsubscribe(Unsubscribe),
    /// UNSUBACK
    UnsubAck(UnsubAck),
    /// PINGREQ
    PingReq,
    /// PINGRESP
    PingResp,
    /// DISCONNECT
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 only)
    Auth(Auth),
}

/// Step one of decoding: is a whole packet buffered at the start of `buf`?
///
/// Returns `Ok(None)` when more bytes are needed. The size limit is applied here, from the
/// fixed header alone, so a peer cannot make the reader buffer an oversized body:
/// `Err(PacketTooLarge)` as soon as the remaining length is known to exceed
/// `max_packet_size` (a whole-packet size, fixed header included).
pub fn check_frame(buf: &[u8], max_packet_size: u32) -> Result<Option<FixedHeader>, DecodeError> {
    let _ = (buf, max_packet_size);
    unimplemented!("codec: check_frame")
}

/// Decodes one packet from the front of `buf`, splitting its bytes off on success.
///
/// `Ok(None)` means more bytes are needed (nothing is consumed). `version` is the
/// connection's protocol version; a CONNECT carries its own and `version` is ignored for it.
/// The returned packet's payload and strings share `buf`'s memory.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    unimplemented!("codec: decode_packet")
}

/// Appends the encoding of `packet` for `version` to `dst`.
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let _ = (packet, version, dst);
    unimplemented!("codec: encode_packet")
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Encodes this packet for `version`, appending to `dst`.
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_packet(self, version, dst)
    }
}

impl PacketType {
    /// The packet's name as the specification writes it (`"PUBLISH"`).
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        }
    }
}

macro_rules! from_body {
    ($($variant:ident($ty:ty)),*) => {
        $(impl From<$ty> for Packet {
            fn from(p: $ty) -> Packet {
                Packet::$variant(p)
            }
        })*
    };
}

impl From<Connect> for Packet {
    fn from(p: Connect) -> Packet {
        Packet::Connect(Box::new(p))
    }
}

from_body!(
    ConnAck(ConnAck),
    Publish(Publish),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    Disconnect(Disconnect),
    Auth(Auth)
);

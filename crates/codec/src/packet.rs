//! The packet enum, the fixed header, and the stream entry points.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::primitives::{MAX_VARINT, VarInt, finish, parse_varint, varint_len, write_varint};

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
/// `max_packet_size` (a whole-packet size, fixed header included; pass `u32::MAX` for no
/// limit beyond the protocol's). The packet type and the fixed header flags are checked
/// here too [MQTT-2.2.2-1], so a bad first byte is refused before anything else is read.
pub fn check_frame(buf: &[u8], max_packet_size: u32) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let packet_type = PacketType::from_u8(first >> 4).ok_or(DecodeError::InvalidPacketType(0))?;
    let flags = first & 0x0F;
    check_flags(packet_type, flags)?;
    let (remaining_length, len_len) = match parse_varint(rest) {
        Ok(VarInt::Value(v, n)) => (v, n),
        Ok(VarInt::Incomplete) => return Ok(None),
        // A fifth length byte [MQTT-1.5.5-1].
        Err(_) => return Err(DecodeError::MalformedRemainingLength),
    };
    let header = FixedHeader {
        packet_type,
        flags,
        remaining_length,
        header_len: 1 + len_len,
    };
    let size = header.frame_len();
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some(header))
}

/// The fixed header flags each packet type requires [MQTT-2.2.2-1] [MQTT-2.2.2-2].
fn check_flags(packet_type: PacketType, flags: u8) -> Result<(), DecodeError> {
    let required = match packet_type {
        PacketType::Publish => {
            // Both QoS bits set is malformed [MQTT-3.3.1-4].
            if (flags >> 1) & 0x03 == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            // DUP must be 0 at QoS 0 [MQTT-3.3.1-2].
            if flags & 0x08 != 0 && flags & 0x06 == 0 {
                return Err(DecodeError::InvalidHeaderFlags {
                    packet: packet_type.name(),
                    flags,
                });
            }
            return Ok(());
        }
        // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0,
    };
    if flags != required {
        return Err(DecodeError::InvalidHeaderFlags {
            packet: packet_type.name(),
            flags,
        });
    }
    Ok(())
}

/// Decodes one packet from the front of `buf`, splitting its bytes off on success.
///
/// `Ok(None)` means more bytes are needed (nothing is consumed). `version` is the
/// connection's protocol version; a CONNECT carries its own and `version` is ignored for it.
/// The returned packet's payload and strings share `buf`'s memory. On an error the
/// offending packet's bytes may have been consumed: the connection is to be closed anyway.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = check_frame(buf, max_packet_size)? else {
        return Ok(None);
    };
    if let Some(ack) = short_ack(&header, buf)? {
        buf.advance(header.frame_len());
        return Ok(Some(ack));
    }
    // The fixed header is dropped in place; only the body is shared with what it decodes to.
    buf.advance(header.header_len);
    let body = buf.split_to(header.remaining_length as usize).freeze();
    decode_body(header, body, version).map(Some)
}

/// A PUBACK, PUBREC, PUBREL or PUBCOMP of two bytes (its packet identifier: Success and no
/// properties in MQTT 5, the only form before it), read from the buffer in place: one of
/// them answers every QoS 1 and 2 message, and sharing its two bytes as [`Bytes`] would
/// cost more than decoding them. None for any other packet (decoded by [`decode_body`]).
fn short_ack(header: &FixedHeader, frame: &[u8]) -> Result<Option<Packet>, DecodeError> {
    if header.remaining_length != 2 {
        return Ok(None);
    }
    let wrap = match header.packet_type {
        PacketType::PubAck => Packet::PubAck,
        PacketType::PubRec => Packet::PubRec,
        PacketType::PubRel => Packet::PubRel,
        PacketType::PubComp => Packet::PubComp,
        _ => return Ok(None),
    };
    let at = header.header_len;
    match u16::from_be_bytes([frame[at], frame[at + 1]]) {
        // [MQTT-2.2.1-3]
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(Some(wrap(PubResp::new(id)))),
    }
}

/// Step two of decoding: parses the body of a packet whose fixed header [`check_frame`]
/// returned. `body` must be exactly `header.remaining_length` bytes; strings and payload
/// in the result are slices of it.
pub fn decode_body(
    header: FixedHeader,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    if body.len() != header.remaining_length as usize {
        return Err(DecodeError::UnexpectedEof);
    }
    let kind = header.packet_type;
    Ok(match kind {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(body)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(body, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode(header.flags, body, version)?),
        PacketType::PubAck => Packet::PubAck(PubResp::decode(kind, body, version)?),
        PacketType::PubRec => Packet::PubRec(PubResp::decode(kind, body, version)?),
        PacketType::PubRel => Packet::PubRel(PubResp::decode(kind, body, version)?),
        PacketType::PubComp => Packet::PubComp(PubResp::decode(kind, body, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(body, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(body, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(body, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(body, version)?),
        PacketType::PingReq | PacketType::PingResp => {
            // No variable header, no payload (sections 3.12, 3.13).
            finish(&body)?;
            if kind == PacketType::PingReq {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(body, version)?),
        // Type 15 is reserved before MQTT 5.
        PacketType::Auth if !version.is_v5() => return Err(DecodeError::InvalidPacketType(15)),
        PacketType::Auth => Packet::Auth(Auth::decode(body)?),
    })
}

/// Appends the encoding of `packet` for `version` to `dst`.
///
/// A CONNECT is always written in its own `protocol` version. Nothing is appended on an
/// error. Fields a version lacks (properties and reason codes before MQTT 5) are not
/// written, and only the properties the packet type allows are. Topic and filter syntax
/// is not checked here; strings are valid by construction ([`crate::ByteStr`]).
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (first, body_len) = packet.first_byte_and_body_len(version)?;
    dst.reserve(1 + varint_len(body_len) + body_len as usize);
    dst.put_u8(first);
    write_varint(dst, body_len);
    let start = dst.len();
    match packet {
        Packet::Connect(p) => p.encode(dst),
        Packet::ConnAck(p) => p.encode(version, dst),
        Packet::Publish(p) => p.encode(version, dst),
        Packet::PubAck(p) => p.encode(PacketType::PubAck, version, dst),
        Packet::PubRec(p) => p.encode(PacketType::PubRec, version, dst),
        Packet::PubRel(p) => p.encode(PacketType::PubRel, version, dst),
        Packet::PubComp(p) => p.encode(PacketType::PubComp, version, dst),
        Packet::Subscribe(p) => p.encode(version, dst),
        Packet::SubAck(p) => p.encode(version, dst),
        Packet::Unsubscribe(p) => p.encode(version, dst),
        Packet::UnsubAck(p) => p.encode(version, dst),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(p) => p.encode(version, dst),
        Packet::Auth(p) => p.encode(dst),
    }
    debug_assert_eq!(dst.len() - start, body_len as usize, "length pass drifted");
    Ok(())
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

    /// The size of this packet on the wire for `version`, fixed header included; the same
    /// checks as [`encode_packet`]. Use it to honour a peer's Maximum Packet Size.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let (_, body) = self.first_byte_and_body_len(version)?;
        Ok(1 + varint_len(body) + body as usize)
    }

    /// The first byte and the remaining length, after every check encoding needs.
    fn first_byte_and_body_len(&self, version: ProtocolVersion) -> Result<(u8, u32), EncodeError> {
        let (flags, body) = match self {
            Packet::Connect(p) => (0, p.body_len()?),
            Packet::ConnAck(p) => (0, p.body_len(version)?),
            Packet::Publish(p) => (p.flags(), p.body_len(version)?),
            Packet::PubAck(p) => (0, p.body_len(PacketType::PubAck, version)?),
            Packet::PubRec(p) => (0, p.body_len(PacketType::PubRec, version)?),
            Packet::PubRel(p) => (0b0010, p.body_len(PacketType::PubRel, version)?),
            Packet::PubComp(p) => (0, p.body_len(PacketType::PubComp, version)?),
            Packet::Subscribe(p) => (0b0010, p.body_len(version)?),
            Packet::SubAck(p) => (0, p.body_len(version)?),
            Packet::Unsubscribe(p) => (0b0010, p.body_len(version)?),
            Packet::UnsubAck(p) => (0, p.body_len(version)?),
            Packet::PingReq | Packet::PingResp => (0, 0),
            Packet::Disconnect(p) => (0, p.body_len(version)?),
            Packet::Auth(_) if !version.is_v5() => return Err(EncodeError::NotInVersion("AUTH")),
            Packet::Auth(p) => (0, p.body_len()?),
        };
        let body = u32::try_from(body)
            .ok()
            .filter(|&b| b <= MAX_VARINT)
            .ok_or(EncodeError::PacketTooLarge)?;
        Ok(((self.packet_type() as u8) << 4 | flags, body))
    }
}

impl PacketType {
    /// The packet type for the high nibble of a first byte; `None` for 0 (reserved) and
    /// above 15.
    pub fn from_u8(v: u8) -> Option<PacketType> {
        Some(match v {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, reject, round_trip};
    use crate::{ByteStr, ProtocolVersion::*, QoS, ReasonCode};

    #[test]
    fn ping() {
        for (p, b) in [(Packet::PingReq, [0xC0, 0]), (Packet::PingResp, [0xD0, 0])] {
            for v in [V31, V311, V5] {
                assert_eq!(&round_trip(&p, v)[..], b);
            }
        }
        let mal = ReasonCode::MALFORMED_PACKET;
        reject(&[0xC0, 1, 0], V311, DecodeError::TrailingBytes(1), mal);
        reject(
            &[0xC1, 0],
            V311,
            DecodeError::InvalidHeaderFlags {
                packet: "PINGREQ",
                flags: 1,
            },
            mal,
        );
    }

    #[test]
    fn reserved_packet_type() {
        reject(
            &[0x00, 0],
            V5,
            DecodeError::InvalidPacketType(0),
            ReasonCode::MALFORMED_PACKET,
        );
    }

    #[test]
    fn check_frame_needs_the_whole_packet() {
        assert_eq!(check_frame(&[], 100), Ok(None));
        assert_eq!(check_frame(&[0x30], 100), Ok(None));
        assert_eq!(check_frame(&[0x30, 0x80], 1000), Ok(None));
        assert_eq!(check_frame(&[0x30, 3, 0, 1], 100), Ok(None));
        let h = check_frame(&[0x30, 3, 0, 1, b'a', 0xC0], 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            FixedHeader {
                packet_type: PacketType::Publish,
                flags: 0,
                remaining_length: 3,
                header_len: 2
            }
        );
        assert_eq!(h.frame_len(), 5);
    }

    #[test]
    fn remaining_length_of_five_bytes() {
        // [MQTT-1.5.5-1]: at most four bytes.
        let e = check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], u32::MAX).unwrap_err();
        assert_eq!(e, DecodeError::MalformedRemainingLength);
        assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
        // Even before the fifth byte arrives.
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], u32::MAX),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    #[test]
    fn too_large_before_the_body_is_buffered() {
        // Fixed header only: 2 + 200 bytes announced, limit 100.
        let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        let e = decode_packet(&mut buf, V311, 100).unwrap_err();
        assert_eq!(
            e,
            DecodeError::PacketTooLarge {
                size: 203,
                max: 100
            }
        );
        assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        // The limit counts the whole packet, fixed header included.
        assert!(check_frame(&[0x30, 3, 0, 1, b'a'], 5).unwrap().is_some());
        assert!(check_frame(&[0x30, 3, 0, 1, b'a'], 4).is_err());
    }

    #[test]
    fn body_must_match_the_remaining_length() {
        let h = check_frame(&[0xC0, 0], 10).unwrap().unwrap();
        assert_eq!(
            decode_body(h, Bytes::from_static(b"x"), V5),
            Err(DecodeError::UnexpectedEof)
        );
        assert_eq!(decode_body(h, Bytes::new(), V5), Ok(Packet::PingReq));
    }

    fn stream() -> (Vec<Packet>, BytesMut) {
        let mut publish = crate::Publish::new(ByteStr::from_static("t/1"), &b"0123456789"[..]);
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = 300;
        publish.properties.make_mut().message_expiry_interval = Some(9);
        let packets = vec![
            Packet::Publish(publish),
            Packet::PingReq,
            Packet::PubAck(crate::PubResp::new(300)),
            Packet::Publish(crate::Publish::new(
                ByteStr::from_static("big"),
                vec![7u8; 300],
            )),
            Packet::Disconnect(crate::Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
        ];
        let mut buf = BytesMut::new();
        for p in &packets {
            encode_packet(p, V5, &mut buf).unwrap();
        }
        (packets, buf)
    }

    #[test]
    fn several_packets_in_one_buffer() {
        let (packets, mut buf) = stream();
        let mut got = Vec::new();
        while let Some(p) = decode_packet(&mut buf, V5, 1024).unwrap() {
            got.push(p);
        }
        assert_eq!(got, packets);
        assert!(buf.is_empty());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let (packets, all) = stream();
        for cut in 0..=all.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&all[..cut], &all[cut..]] {
                // Feed one byte at a time: `None` until a packet is complete, and nothing
                // consumed meanwhile.
                for &b in chunk {
                    buf.extend_from_slice(&[b]);
                    let before = buf.len();
                    match decode_packet(&mut buf, V5, 1024).unwrap() {
                        Some(p) => got.push(p),
                        None => assert_eq!(buf.len(), before),
                    }
                }
            }
            assert_eq!(got, packets, "cut at {cut}");
        }
    }

    #[test]
    fn decode_v5_publish_with_every_property() {
        let mut p = crate::Publish::new(ByteStr::from_static("x"), &b""[..]);
        p.qos = QoS::ExactlyOnce;
        p.packet_id = 1;
        p.dup = true;
        let pr = p.properties.make_mut();
        pr.payload_format_indicator = Some(0);
        pr.message_expiry_interval = Some(u32::MAX);
        pr.content_type = Some(ByteStr::from_static("c"));
        pr.response_topic = Some(ByteStr::from_static("r"));
        pr.correlation_data = Some(Bytes::from_static(b"id"));
        pr.subscription_identifiers = vec![1, 128, 16_384];
        pr.topic_alias = Some(65_535);
        pr.user_properties = vec![
            (ByteStr::from_static("a"), ByteStr::from_static("1")),
            (ByteStr::from_static("a"), ByteStr::from_static("2")),
        ];
        let packet = Packet::Publish(p);
        round_trip(&packet, V5);
        // Before MQTT 5 the properties are neither written nor read.
        let bytes = round_trip_lossy(&packet, V311);
        assert_eq!(&bytes[..], &[0x3C, 5, 0, 1, b'x', 0, 1]);
    }

    fn round_trip_lossy(p: &Packet, v: ProtocolVersion) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_packet(p, v, &mut buf).unwrap();
        let out = buf.clone();
        decode(&buf, v).unwrap();
        out
    }

    #[test]
    fn encode_errors_leave_dst_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let mut p = crate::Publish::new(ByteStr::from_static("t"), &b""[..]);
        p.qos = QoS::AtLeastOnce;
        assert_eq!(
            encode_packet(&Packet::Publish(p), V311, &mut buf),
            Err(EncodeError::ZeroPacketId)
        );
        let mut c = crate::Publish::new(ByteStr::from_static("t"), &b""[..]);
        c.properties.make_mut().correlation_data = Some(Bytes::from(vec![0u8; 70_000]));
        assert_eq!(
            encode_packet(&Packet::Publish(c), V5, &mut buf),
            Err(EncodeError::InvalidString)
        );
        assert_eq!(&buf[..], b"keep");
        let huge = crate::Publish::new(
            ByteStr::from_static("t"),
            Bytes::from(vec![0u8; 268_435_455]),
        );
        assert_eq!(
            Packet::Publish(huge).encoded_len(V311),
            Err(EncodeError::PacketTooLarge)
        );
    }

    #[test]
    fn properties_a_packet_type_lacks_are_not_written() {
        // A will's properties reused for the PUBLISH that delivers it: the Will Delay
        // Interval is dropped, the rest kept.
        let mut p = crate::Publish::new(ByteStr::from_static("t"), &b""[..]);
        p.properties.make_mut().will_delay_interval = Some(5);
        p.properties.make_mut().content_type = Some(ByteStr::from_static("c"));
        let mut buf = BytesMut::new();
        encode_packet(&Packet::Publish(p), V5, &mut buf).unwrap();
        let Packet::Publish(back) = decode(&buf, V5).unwrap() else {
            panic!()
        };
        assert_eq!(back.properties.will_delay_interval, None);
        assert_eq!(back.properties.content_type.as_deref(), Some("c"));
    }
}

//! PUBLISH: an application message, in either direction.

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::{
    MAX_VARINT, read_binary, read_packet_id, string_len, write_string, write_varint,
};
use crate::properties::Allowed;
use crate::{ByteStr, DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this is a redelivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic name; empty only in MQTT 5 when a topic alias stands for it.
    pub topic: ByteStr,
    /// Packet identifier; 0 at QoS 0 (where none is written), never 0 at QoS 1 and 2.
    pub packet_id: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// The payload: a slice of the buffer it was decoded from.
    ///
    /// Being a slice, it keeps that whole read buffer's allocation alive. Something stored
    /// for long (a retained message, an offline queue) is better copied out with
    /// `Bytes::copy_from_slice` so a small message does not pin a large buffer.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message without properties.
    pub fn new(topic: ByteStr, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: 0,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    /// The low nibble of the first byte: DUP, QoS, RETAIN (section 3.3.1). DUP is never
    /// written at QoS 0 [MQTT-3.3.1-2], whatever `dup` says.
    pub(crate) fn flags(&self) -> u8 {
        let dup = self.dup && self.qos != QoS::AtMostOnce;
        (u8::from(dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }

    /// Decodes a PUBLISH body; `flags` were checked by [`crate::check_frame`].
    pub(crate) fn decode(
        flags: u8,
        mut b: Bytes,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        // No wildcards in a topic name [MQTT-3.3.2-2]; empty only with a topic alias in
        // MQTT 5 (section 3.3.2.1), never before [MQTT-4.7.3-1].
        let topic = ByteStr::topic_name(read_binary(&mut b)?)?;
        if topic.is_empty() && !version.is_v5() {
            return Err(DecodeError::InvalidTopicName);
        }
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            // QoS 1 and 2 carry a non-zero packet identifier [MQTT-2.2.1-3].
            read_packet_id(&mut b)?
        };
        let properties = if version.is_v5() {
            Properties::decode(&mut b, Allowed::PUBLISH)?
        } else {
            Properties::default()
        };
        // "It is a Protocol Error if the Topic Name is zero length and there is no Topic Alias."
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::MissingTopicAlias);
        }
        Ok(Publish {
            dup: flags & 0x08 != 0,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            // The rest of the body, shared with the read buffer.
            payload: b,
        })
    }

    /// Body size up to, not including, the payload.
    fn head_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut n = string_len(&self.topic);
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if version.is_v5() {
            n += self.properties.encoded_len(Allowed::PUBLISH)?;
        }
        Ok(n)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.qos != QoS::AtMostOnce && self.packet_id == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        Ok(self.head_len(version)? + self.payload.len())
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        write_string(dst, &self.topic);
        if self.qos != QoS::AtMostOnce {
            dst.put_u16(self.packet_id);
        }
        if version.is_v5() {
            self.properties.encode(Allowed::PUBLISH, dst);
        }
        dst.put_slice(&self.payload);
    }
}

/// A PUBLISH encoded once, to be written to many subscribers that differ only in packet
/// identifier and DUP flag.
///
/// A broker fanning a message out encodes it once per distinct form (version, QoS, retain,
/// topic or alias, properties) and then writes it to each subscriber with
/// [`EncodedPublish::write_to`], which copies the prepared bytes and patches in the packet
/// identifier. The payload is kept as a shared [`Bytes`], never copied until written.
///
/// ```
/// use bytes::BytesMut;
/// use tinsel_codec::{ByteStr, EncodedPublish, ProtocolVersion, Publish, QoS};
///
/// let mut p = Publish::new(ByteStr::from_static("a/b"), &b"hi"[..]);
/// p.qos = QoS::AtLeastOnce;
/// let shared = EncodedPublish::new(&p, ProtocolVersion::V311).unwrap();
/// let mut out = BytesMut::new();
/// shared.write_to(7, false, &mut out).unwrap(); // subscriber 1, packet id 7
/// shared.write_to(9, true, &mut out).unwrap(); // subscriber 2, a redelivery with id 9
/// assert_eq!(&out[..11], &[0x32, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i']);
/// assert_eq!(out[11], 0x3A); // DUP set
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPublish {
    /// Fixed header and topic name.
    head: Bytes,
    /// Properties (MQTT 5) and payload prefix: everything between the packet identifier and
    /// the payload.
    props: Bytes,
    /// The payload.
    payload: Bytes,
    /// QoS > 0: a packet identifier is written between `head` and `props`.
    has_packet_id: bool,
}

impl EncodedPublish {
    /// Encodes `publish` for `version`. Its `packet_id` and `dup` are ignored: they are given
    /// to [`EncodedPublish::write_to`].
    pub fn new(publish: &Publish, version: ProtocolVersion) -> Result<EncodedPublish, EncodeError> {
        let body = publish.head_len(version)? + publish.payload.len();
        if body > MAX_VARINT as usize {
            return Err(EncodeError::PacketTooLarge);
        }
        let has_packet_id = publish.qos != QoS::AtMostOnce;
        let mut head = BytesMut::with_capacity(5 + string_len(&publish.topic));
        head.put_u8(0x30 | (publish.flags() & 0x07));
        write_varint(&mut head, body as u32);
        write_string(&mut head, &publish.topic);
        let mut props = BytesMut::new();
        if version.is_v5() {
            publish.properties.encode(Allowed::PUBLISH, &mut props);
        }
        Ok(EncodedPublish {
            head: head.freeze(),
            props: props.freeze(),
            payload: publish.payload.clone(),
            has_packet_id,
        })
    }

    /// Size of the whole packet on the wire.
    pub fn len(&self) -> usize {
        self.head.len()
            + 2 * usize::from(self.has_packet_id)
            + self.props.len()
            + self.payload.len()
    }

    /// Never true: a PUBLISH has at least a fixed header and a topic length.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when a packet identifier is written (QoS 1 and 2).
    pub fn needs_packet_id(&self) -> bool {
        self.has_packet_id
    }

    /// Appends the packet to `dst` with `packet_id` (ignored at QoS 0) and the DUP flag.
    /// Fails with [`EncodeError::ZeroPacketId`] at QoS 1 and 2 when `packet_id` is 0.
    pub fn write_to(
        &self,
        packet_id: u16,
        dup: bool,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.has_packet_id && packet_id == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        dst.reserve(self.len());
        let (first, rest) = self.head.split_first().unwrap_or((&0x30, &[]));
        // DUP is only ever set on a redelivery at QoS 1 or 2 [MQTT-3.3.1-2].
        dst.put_u8(first | if dup && self.has_packet_id { 0x08 } else { 0 });
        dst.put_slice(rest);
        if self.has_packet_id {
            dst.put_u16(packet_id);
        }
        dst.put_slice(&self.props);
        dst.put_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{Packet, ReasonCode};

    fn sample(qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: true,
            topic: ByteStr::from_static("a/b"),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 10 },
            properties: Properties::default(),
            payload: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn golden_qos1_v311() {
        let p = Packet::Publish(sample(QoS::AtLeastOnce));
        // 0x33: PUBLISH, QoS 1, RETAIN; length 9; topic "a/b"; id 10; payload "hi".
        let golden = [0x33, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i'];
        assert_eq!(encode(&p, ProtocolVersion::V311), golden);
        round_trip(&p, ProtocolVersion::V311);
    }

    #[test]
    fn golden_qos0_v5_with_alias() {
        let mut p = sample(QoS::AtMostOnce);
        p.retain = false;
        p.topic = ByteStr::new();
        p.properties.make_mut().topic_alias = Some(1);
        let p = Packet::Publish(p);
        // topic length 0, property length 3, Topic Alias (0x23) = 1, payload.
        let golden = [0x30, 8, 0, 0, 3, 0x23, 0, 1, b'h', b'i'];
        assert_eq!(encode(&p, ProtocolVersion::V5), golden);
        round_trip(&p, ProtocolVersion::V5);
    }

    #[test]
    fn payload_shares_the_read_buffer() {
        let mut buf = bytes::BytesMut::new();
        crate::encode_packet(
            &Packet::Publish(sample(QoS::AtMostOnce)),
            ProtocolVersion::V311,
            &mut buf,
        )
        .unwrap();
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        let Some(Packet::Publish(p)) =
            crate::decode_packet(&mut buf, ProtocolVersion::V311, 1024).unwrap()
        else {
            panic!("not a publish")
        };
        let at = p.payload.as_ptr() as usize;
        assert!(at >= base && at < end, "payload was copied");
        let at = p.topic.as_bytes().as_ptr() as usize;
        assert!(at >= base && at < end, "topic was copied");
    }

    #[test]
    fn malformed() {
        use ProtocolVersion::*;
        // Wildcards in a topic name [MQTT-3.3.2-2].
        for t in [&b"a/+"[..], b"#"] {
            let mut bytes = vec![0x30, 2 + t.len() as u8, 0, t.len() as u8];
            bytes.extend_from_slice(t);
            reject(
                &bytes,
                V311,
                DecodeError::InvalidTopicName,
                ReasonCode::TOPIC_NAME_INVALID,
            );
        }
        // No MQTT string at all: U+0000, or invalid UTF-8, also beside a wildcard (the
        // string is judged first) [MQTT-1.5.4-1] [MQTT-1.5.4-2].
        for t in [&b"a\0b"[..], b"\0#", b"a/\xff", b"\xc3+"] {
            let mut bytes = vec![0x30, 2 + t.len() as u8, 0, t.len() as u8];
            bytes.extend_from_slice(t);
            reject(
                &bytes,
                V311,
                DecodeError::InvalidString,
                ReasonCode::MALFORMED_PACKET,
            );
        }
        // Any other UTF-8 is a topic name, multi-byte characters included.
        let t = "h\u{e4}user/\u{1f384}".as_bytes();
        let mut bytes = vec![0x30, 2 + t.len() as u8, 0, t.len() as u8];
        bytes.extend_from_slice(t);
        let Ok(Packet::Publish(p)) = decode(&bytes, V311) else {
            panic!("a multi-byte topic name was refused");
        };
        assert_eq!(&*p.topic, "h\u{e4}user/\u{1f384}");
        // Empty topic: never before 5.0; in 5.0 only with a topic alias.
        reject(
            &[0x30, 2, 0, 0],
            V311,
            DecodeError::InvalidTopicName,
            ReasonCode::TOPIC_NAME_INVALID,
        );
        reject(
            &[0x30, 3, 0, 0, 0],
            V5,
            DecodeError::MissingTopicAlias,
            ReasonCode::PROTOCOL_ERROR,
        );
        // QoS 3 [MQTT-3.3.1-4].
        reject(
            &[0x36, 5, 0, 1, b'a', 0, 1],
            V311,
            DecodeError::InvalidQoS,
            ReasonCode::MALFORMED_PACKET,
        );
        // DUP at QoS 0 [MQTT-3.3.1-2].
        reject(
            &[0x38, 3, 0, 1, b'a'],
            V311,
            DecodeError::InvalidHeaderFlags {
                packet: "PUBLISH",
                flags: 8,
            },
            ReasonCode::MALFORMED_PACKET,
        );
        // Packet id 0 at QoS 1 [MQTT-2.2.1-3].
        reject(
            &[0x32, 5, 0, 1, b'a', 0, 0],
            V311,
            DecodeError::ZeroPacketId,
            ReasonCode::MALFORMED_PACKET,
        );
        // Truncated packet id.
        reject(
            &[0x32, 4, 0, 1, b'a', 0],
            V311,
            DecodeError::UnexpectedEof,
            ReasonCode::MALFORMED_PACKET,
        );
        // Topic alias 0 [MQTT-3.3.2-8].
        reject(
            &[0x30, 7, 0, 1, b'a', 3, 0x23, 0, 0],
            V5,
            DecodeError::InvalidPropertyValue(0x23),
            ReasonCode::PROTOCOL_ERROR,
        );
        // A CONNECT-only property in PUBLISH.
        reject(
            &[0x30, 7, 0, 1, b'a', 3, 0x21, 0, 1],
            V5,
            DecodeError::PropertyNotAllowed {
                property: 0x21,
                packet: "PUBLISH",
            },
            ReasonCode::MALFORMED_PACKET,
        );
        // Invalid UTF-8 topic.
        reject(
            &[0x30, 3, 0, 1, 0xFF],
            V311,
            DecodeError::InvalidString,
            ReasonCode::MALFORMED_PACKET,
        );
        // U+0000 in the topic [MQTT-1.5.4-2].
        reject(
            &[0x30, 3, 0, 1, 0],
            V311,
            DecodeError::InvalidString,
            ReasonCode::MALFORMED_PACKET,
        );
        // A property length running past the packet.
        reject(
            &[0x30, 4, 0, 1, b'a', 5],
            V5,
            DecodeError::UnexpectedEof,
            ReasonCode::MALFORMED_PACKET,
        );
        assert!(decode(&[0x30, 3, 0, 1, b'a'], V311).is_ok());
    }

    #[test]
    fn encoded_publish_matches_encode_packet() {
        for v in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut p = sample(qos);
                p.properties
                    .make_mut()
                    .user_properties
                    .push((ByteStr::from_static("k"), ByteStr::from_static("v")));
                let shared = EncodedPublish::new(&p, v).unwrap();
                for (id, dup) in [(1, false), (65_535, true)] {
                    let mut want = p.clone();
                    if qos != QoS::AtMostOnce {
                        want.packet_id = id;
                        want.dup = dup;
                    }
                    let mut got = bytes::BytesMut::new();
                    shared.write_to(id, dup, &mut got).unwrap();
                    assert_eq!(got.len(), shared.len());
                    assert_eq!(&got[..], &encode(&Packet::Publish(want), v)[..]);
                }
                if qos != QoS::AtMostOnce {
                    let mut b = bytes::BytesMut::new();
                    assert_eq!(
                        shared.write_to(0, false, &mut b),
                        Err(EncodeError::ZeroPacketId)
                    );
                }
            }
        }
    }
}

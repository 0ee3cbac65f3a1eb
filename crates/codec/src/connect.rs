//! CONNECT: the first packet a client sends.

use bytes::{BufMut, Bytes};

use crate::primitives::{
    binary_len, finish, read_binary, read_string, read_u8, read_u16, string_len, write_binary,
    write_string,
};
use crate::properties::Allowed;
use crate::topic::valid_topic_name;
use crate::{ByteStr, DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol the client speaks; it fixes the version for the whole connection.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1, 3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// The client identifier; may be empty.
    pub client_id: ByteStr,
    /// The will message, if any.
    pub will: Option<Will>,
    /// User name, if any.
    pub username: Option<ByteStr>,
    /// Password, if any (binary data).
    pub password: Option<Bytes>,
    /// The client says it is a bridge: the top bit of the protocol level (`0x80 | 4` for
    /// MQTT 3.1.1), as Mosquitto's `try_private` sends it. Not in the MQTT specification;
    /// brokers that know it treat the bridge's MQTT 3 subscriptions as No Local with
    /// Retain As Published, so that messages do not loop between bridged brokers.
    pub bridge: bool,
}

/// The will message carried by a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic to publish to.
    pub topic: ByteStr,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 will properties (will delay interval, message expiry, content type, ...).
    pub properties: Properties,
}

impl Connect {
    /// Decodes a CONNECT body. The protocol name and level in the body decide the version.
    pub(crate) fn decode(mut b: Bytes) -> Result<Connect, DecodeError> {
        let b = &mut b;
        // Compared as bytes: anything but the two names (invalid UTF-8 included) is refused.
        let name = read_binary(b)?;
        let level = read_u8(b)?;
        // The top bit marks a bridge (Mosquitto's `try_private`); the rest is the level.
        let bridge = level & 0x80 != 0;
        // [MQTT-3.1.2-1] the protocol name; [MQTT-3.1.2-2] the level must match it.
        let protocol = match (&name[..], level & 0x7f) {
            (b"MQTT", 4) => ProtocolVersion::V311,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V31,
            (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolLevel(level)),
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = read_u8(b)?;
        let bad_flags = Err(DecodeError::InvalidConnectFlags(flags));
        // The reserved bit must be 0 [MQTT-3.1.2-3].
        if flags & 0x01 != 0 {
            return bad_flags;
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            // Without a will, Will QoS and Will Retain must be 0: 5.0 [MQTT-3.1.2-11]
            // [MQTT-3.1.2-13], 3.1.1 [MQTT-3.1.2-13] [MQTT-3.1.2-15].
            return bad_flags;
        }
        // Will QoS 3 is a Malformed Packet: 5.0 [MQTT-3.1.2-12], 3.1.1 [MQTT-3.1.2-14].
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS)?;
        if protocol == ProtocolVersion::V311 && password_flag && !username_flag {
            // 3.1.1: no password without a user name [MQTT-3.1.2-22].
            return bad_flags;
        }
        let keep_alive = read_u16(b)?;
        let properties = if protocol.is_v5() {
            Properties::decode(b, Allowed::CONNECT)?
        } else {
            Properties::default()
        };
        // The client identifier comes first in the payload [MQTT-3.1.3-1] [MQTT-3.1.3-3].
        let client_id = read_string(b)?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                Properties::decode(b, Allowed::WILL)?
            } else {
                Properties::default()
            };
            let topic = read_string(b)?;
            // The will topic is a topic name: no wildcards, not empty [MQTT-3.1.3-11]
            // [MQTT-4.7.3-1]. (Mosquitto refuses a wildcard will topic too.)
            if !valid_topic_name(&topic) {
                return Err(DecodeError::InvalidTopicName);
            }
            let payload = read_binary(b)?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(read_string(b)?)
        } else {
            None
        };
        let password = if password_flag {
            Some(read_binary(b)?)
        } else {
            None
        };
        finish(b)?;
        Ok(Connect {
            protocol,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
            bridge,
        })
    }

    /// The body size (and the check that every field fits). The version written is
    /// `self.protocol`.
    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        let mut n = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            n += self.properties.encoded_len(Allowed::CONNECT)?;
        }
        n += string_len(&self.client_id);
        if let Some(w) = &self.will {
            if v5 {
                n += w.properties.encoded_len(Allowed::WILL)?;
            }
            n += string_len(&w.topic) + binary_len(&w.payload)?;
        }
        if let Some(u) = &self.username {
            n += string_len(u);
        }
        if let Some(p) = &self.password {
            n += binary_len(p)?;
        }
        Ok(n)
    }

    /// Writes the body; [`Connect::body_len`] has checked it.
    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        let v5 = self.protocol.is_v5();
        write_binary(dst, self.protocol.protocol_name().as_bytes());
        dst.put_u8(self.protocol.level() | if self.bridge { 0x80 } else { 0 });
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos.as_u8() << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(Allowed::CONNECT, dst);
        }
        write_string(dst, &self.client_id);
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(Allowed::WILL, dst);
            }
            write_string(dst, &w.topic);
            write_binary(dst, &w.payload);
        }
        if let Some(u) = &self.username {
            write_string(dst, u);
        }
        if let Some(p) = &self.password {
            write_binary(dst, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{Packet, ReasonCode};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn basic(protocol: ProtocolVersion) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: ByteStr::from_static("tinsel"),
            will: None,
            username: None,
            password: None,
            bridge: false,
        }
    }

    /// The bytes `mosquitto_pub -V mqttv311 -i tinsel -k 60` sends.
    const MOSQUITTO_V311: &str = "101200044d5154540402003c000674696e73656c";
    /// The same with `-V mqttv31`.
    const MOSQUITTO_V31: &str = "101400064d51497364700302003c000674696e73656c";
    /// `-V mqttv5 -D connect session-expiry-interval 10 -u user -P pass --will-topic w
    /// --will-payload bye --will-qos 1` (mosquitto_pub adds Receive Maximum 20).
    const MOSQUITTO_V5: &str = "103000044d51545405ce003c08110000000a210014000674696e73656c000001770003627965000475736572000470617373";

    #[test]
    fn golden_v311_and_v31() {
        for (golden, v) in [
            (MOSQUITTO_V311, ProtocolVersion::V311),
            (MOSQUITTO_V31, ProtocolVersion::V31),
        ] {
            let bytes = hex(golden);
            // The connection's version does not matter for CONNECT.
            let p = decode(&bytes, ProtocolVersion::V5).unwrap();
            assert_eq!(p, Packet::Connect(Box::new(basic(v))));
            assert_eq!(encode(&p, ProtocolVersion::V311), bytes);
            round_trip(&p, v);
        }
    }

    #[test]
    fn bridge_bit_of_the_protocol_level() {
        // A Mosquitto bridge with `try_private true` sends level 0x84 (0x83 for MQTT 3.1).
        for (golden, at, v) in [
            (MOSQUITTO_V311, 8, ProtocolVersion::V311),
            (MOSQUITTO_V31, 10, ProtocolVersion::V31),
        ] {
            let mut bytes = hex(golden);
            bytes[at] |= 0x80;
            let p = decode(&bytes, ProtocolVersion::V311).unwrap();
            let mut want = basic(v);
            want.bridge = true;
            assert_eq!(p, Packet::Connect(Box::new(want)));
            assert_eq!(encode(&p, v), bytes);
            round_trip(&p, v);
        }
        // The bit does not make an unknown level known.
        let mut bytes = hex(MOSQUITTO_V311);
        bytes[8] = 0x86;
        assert_eq!(
            decode(&bytes, ProtocolVersion::V311),
            Err(DecodeError::UnsupportedProtocolLevel(0x86))
        );
    }

    #[test]
    fn golden_v5_with_will_and_properties() {
        let bytes = hex(MOSQUITTO_V5);
        let mut want = basic(ProtocolVersion::V5);
        want.properties.make_mut().session_expiry_interval = Some(10);
        want.properties.make_mut().receive_maximum = Some(20);
        want.will = Some(Will {
            topic: ByteStr::from_static("w"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        want.username = Some(ByteStr::from_static("user"));
        want.password = Some(Bytes::from_static(b"pass"));
        let p = decode(&bytes, ProtocolVersion::V311).unwrap();
        assert_eq!(p, Packet::Connect(Box::new(want)));
        assert_eq!(encode(&p, ProtocolVersion::V5), bytes);
    }

    #[test]
    fn will_properties_round_trip() {
        let mut c = basic(ProtocolVersion::V5);
        let mut wp = Properties::from(crate::PropertyValues {
            will_delay_interval: Some(5),
            message_expiry_interval: Some(100),
            payload_format_indicator: Some(1),
            content_type: Some(ByteStr::from_static("text/plain")),
            response_topic: Some(ByteStr::from_static("r/t")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            ..Default::default()
        });
        wp.make_mut()
            .user_properties
            .push((ByteStr::from_static("a"), ByteStr::from_static("b")));
        c.will = Some(Will {
            topic: ByteStr::from_static("will/topic"),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: wp,
        });
        c.properties.make_mut().authentication_method = Some(ByteStr::from_static("SCRAM"));
        c.properties.make_mut().authentication_data = Some(Bytes::from_static(b"abc"));
        c.properties.make_mut().request_problem_information = Some(0);
        c.properties.make_mut().request_response_information = Some(1);
        c.properties.make_mut().topic_alias_maximum = Some(10);
        c.properties.make_mut().maximum_packet_size = Some(1024);
        c.password = Some(Bytes::from_static(b"no user: allowed in 5.0"));
        round_trip(&Packet::from(c), ProtocolVersion::V5);
    }

    /// A 3.1.1 CONNECT with `flags` and then `rest` after the keep alive.
    fn with_flags(flags: u8, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        body.extend_from_slice(rest);
        let mut v = vec![0x10, body.len() as u8];
        v.extend(body);
        v
    }

    #[test]
    fn malformed() {
        use DecodeError as E;
        use ProtocolVersion::V311;
        let mal = ReasonCode::MALFORMED_PACKET;
        let id = [0, 1, b'c'];
        // Reserved flag bit [MQTT-3.1.2-3].
        reject(
            &with_flags(0x03, &id),
            V311,
            E::InvalidConnectFlags(0x03),
            mal,
        );
        // Will QoS or Will Retain without a will [MQTT-3.1.2-11] [MQTT-3.1.2-13].
        reject(
            &with_flags(0x08, &id),
            V311,
            E::InvalidConnectFlags(0x08),
            mal,
        );
        reject(
            &with_flags(0x20, &id),
            V311,
            E::InvalidConnectFlags(0x20),
            mal,
        );
        // Will QoS 3 [MQTT-3.1.2-12].
        let will = [0, 1, b'c', 0, 1, b'w', 0, 0];
        reject(&with_flags(0x1C, &will), V311, E::InvalidQoS, mal);
        // Password without user name in 3.1.1 [MQTT-3.1.2-22].
        reject(
            &with_flags(0x40, &[0, 1, b'c', 0, 0]),
            V311,
            E::InvalidConnectFlags(0x40),
            mal,
        );
        // A will topic with a wildcard.
        let will = [0, 1, b'c', 0, 1, b'#', 0, 0];
        reject(
            &with_flags(0x04, &will),
            V311,
            E::InvalidTopicName,
            ReasonCode::TOPIC_NAME_INVALID,
        );
        // Truncated: the will flag promises a will that is not there.
        reject(&with_flags(0x04, &id), V311, E::UnexpectedEof, mal);
        // Trailing bytes after the last field.
        reject(
            &with_flags(0x02, &[0, 1, b'c', 9]),
            V311,
            E::TrailingBytes(1),
            mal,
        );
        // Invalid UTF-8 client identifier.
        reject(
            &with_flags(0x02, &[0, 1, 0xC0]),
            V311,
            E::InvalidString,
            mal,
        );
        // Protocol name and level [MQTT-3.1.2-1] [MQTT-3.1.2-2].
        let unsupported = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
        let mut b = with_flags(0x02, &id);
        b[8] = 3; // "MQTT" with level 3
        reject(&b, V311, E::UnsupportedProtocolLevel(3), unsupported);
        b[8] = 6;
        reject(&b, V311, E::UnsupportedProtocolLevel(6), unsupported);
        let mut b = with_flags(0x02, &id);
        b[7] = b'X'; // "MQTX"
        reject(&b, V311, E::InvalidProtocolName, unsupported);
        let mut b = hex(MOSQUITTO_V31);
        b[10] = 4; // "MQIsdp" with level 4
        reject(&b, V311, E::UnsupportedProtocolLevel(4), unsupported);
        // Reserved header flags [MQTT-2.2.2-1].
        let mut b = with_flags(0x02, &id);
        b[0] = 0x11;
        reject(
            &b,
            V311,
            E::InvalidHeaderFlags {
                packet: "CONNECT",
                flags: 1,
            },
            mal,
        );
    }

    #[test]
    fn malformed_v5_properties() {
        use DecodeError as E;
        use ProtocolVersion::V5;
        let proto = ReasonCode::PROTOCOL_ERROR;
        let v5 = |props: &[u8]| {
            let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60];
            body.push(props.len() as u8);
            body.extend_from_slice(props);
            body.extend_from_slice(&[0, 1, b'c']);
            let mut v = vec![0x10, body.len() as u8];
            v.extend(body);
            v
        };
        assert!(decode(&v5(&[]), V5).is_ok());
        reject(&v5(&[0x21, 0, 0]), V5, E::InvalidPropertyValue(0x21), proto);
        reject(
            &v5(&[0x27, 0, 0, 0, 0]),
            V5,
            E::InvalidPropertyValue(0x27),
            proto,
        );
        reject(&v5(&[0x17, 2]), V5, E::InvalidPropertyValue(0x17), proto);
        reject(&v5(&[0x19, 7]), V5, E::InvalidPropertyValue(0x19), proto);
        reject(
            &v5(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
            V5,
            E::DuplicateProperty(0x11),
            proto,
        );
        reject(
            &v5(&[0x01, 1]),
            V5,
            E::PropertyNotAllowed {
                property: 0x01,
                packet: "CONNECT",
            },
            ReasonCode::MALFORMED_PACKET,
        );
        reject(
            &v5(&[0x05, 1]),
            V5,
            E::UnknownProperty(0x05),
            ReasonCode::MALFORMED_PACKET,
        );
        // A value running past the property length.
        reject(
            &v5(&[0x21, 0]),
            V5,
            E::UnexpectedEof,
            ReasonCode::MALFORMED_PACKET,
        );
    }
}

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
        let name = read_string(b)?;
        let level = read_u8(b)?;
        // [MQTT-3.1.2-1] the protocol name; [MQTT-3.1.2-2] the level must match it.
        let protocol = match (name.as_str(), level) {
            ("MQTT", 4) => ProtocolVersion::V311,
            ("MQTT", 5) => ProtocolVersion::V5,
            ("MQIsdp", 3) => ProtocolVersion::V31,
            ("MQTT" | "MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolLevel(l)),
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
            // Without a will, Will QoS and Will Retain must be 0 [MQTT-3.1.2-11] [MQTT-3.1.2-13].
            return bad_flags;
        }
        // Will QoS 3 is a Malformed Packet [MQTT-3.1.2-12].
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
            // The will topic is a topic name: no wildcards, not empty [MQTT-3.1.3-11] [MQTT-4.7.3-1].
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
        dst.put_u8(self.protocol.level());
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

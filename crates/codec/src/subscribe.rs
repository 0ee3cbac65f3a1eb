//! SUBSCRIBE: topic filters with their options.

use bytes::{BufMut, Bytes};

use crate::primitives::{
    check_packet_id, read_packet_id, read_string, read_u8, string_len, write_string,
};
use crate::properties::Allowed;
use crate::{ByteStr, DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

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

impl SubscriptionOptions {
    /// Options with maximum QoS `qos` and every MQTT 5 option at its default.
    pub fn new(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    /// Parses the options byte. Reserved bits set is malformed [MQTT-3.8.3-5] (3.1.1:
    /// [MQTT-3-8.3-4], where everything above the QoS is reserved); Maximum QoS 3 and
    /// Retain Handling 3 are Protocol Errors (section 3.8.3.1).
    pub(crate) fn from_byte(b: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        let bad = Err(DecodeError::InvalidSubscriptionOptions(b));
        if b & reserved != 0 {
            return bad;
        }
        let Some(qos) = QoS::from_u8(b & 0x03) else {
            return bad;
        };
        let retain_handling = match (b >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return bad,
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }

    /// The options byte; before MQTT 5 only the QoS.
    pub(crate) fn to_byte(self, version: ProtocolVersion) -> u8 {
        if !version.is_v5() {
            return self.qos.as_u8();
        }
        let rh = match self.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        };
        self.qos.as_u8()
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | (rh << 4)
    }
}

impl Subscribe {
    pub(crate) fn decode(b: Bytes, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
        let (packet_id, properties, filters) =
            decode_filter_list(b, version, Allowed::SUBSCRIBE, |b| {
                // Only the string is checked here: the broker judges the filter's syntax, so
                // it can answer 0x8F Topic Filter invalid in MQTT 5.
                let filter = read_string(b)?;
                let options = SubscriptionOptions::from_byte(read_u8(b)?, version)?;
                Ok((filter, options))
            })?;
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut n = header_len(
            self.packet_id,
            &self.properties,
            version,
            Allowed::SUBSCRIBE,
        )?;
        for (f, _) in &self.filters {
            n += string_len(f) + 1;
        }
        Ok(n)
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        encode_header(
            self.packet_id,
            &self.properties,
            version,
            Allowed::SUBSCRIBE,
            dst,
        );
        for (f, o) in &self.filters {
            write_string(dst, f);
            dst.put_u8(o.to_byte(version));
        }
    }
}

/// Decodes the layout SUBSCRIBE and UNSUBSCRIBE share: the packet identifier, the MQTT 5
/// properties, then one entry per topic filter, each read by `entry`, up to the end.
pub(crate) fn decode_filter_list<T>(
    mut b: Bytes,
    version: ProtocolVersion,
    allowed: Allowed,
    mut entry: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<(u16, Properties, Vec<T>), DecodeError> {
    let b = &mut b;
    let packet_id = read_packet_id(b)?;
    let properties = if version.is_v5() {
        Properties::decode(b, allowed)?
    } else {
        Properties::default()
    };
    let mut entries = Vec::new();
    while !b.is_empty() {
        entries.push(entry(b)?);
    }
    // At least one filter [MQTT-3.8.3-3] [MQTT-3.10.3-2].
    if entries.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok((packet_id, properties, entries))
}

/// Length of the packet identifier and MQTT 5 properties that open SUBSCRIBE and UNSUBSCRIBE.
pub(crate) fn header_len(
    packet_id: u16,
    properties: &Properties,
    version: ProtocolVersion,
    allowed: Allowed,
) -> Result<usize, EncodeError> {
    check_packet_id(packet_id)?;
    let mut n = 2;
    if version.is_v5() {
        n += properties.encoded_len(allowed)?;
    }
    Ok(n)
}

/// Writes the packet identifier and MQTT 5 properties that open SUBSCRIBE and UNSUBSCRIBE.
pub(crate) fn encode_header(
    packet_id: u16,
    properties: &Properties,
    version: ProtocolVersion,
    allowed: Allowed,
    dst: &mut impl BufMut,
) {
    dst.put_u16(packet_id);
    if version.is_v5() {
        properties.encode(allowed, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode, reject, round_trip};
    use crate::{Packet, ProtocolVersion::*, ReasonCode};

    #[test]
    fn golden_v311() {
        // The 3.1.1 spec's example layout: id 10, "a/b" QoS 1, "c/d" QoS 2.
        let bytes = [
            0x82, 14, 0, 10, 0, 3, b'a', b'/', b'b', 1, 0, 3, b'c', b'/', b'd', 2,
        ];
        let p = Subscribe {
            packet_id: 10,
            properties: Properties::default(),
            filters: vec![
                (
                    ByteStr::from_static("a/b"),
                    SubscriptionOptions::new(QoS::AtLeastOnce),
                ),
                (
                    ByteStr::from_static("c/d"),
                    SubscriptionOptions::new(QoS::ExactlyOnce),
                ),
            ],
        };
        assert_eq!(decode(&bytes, V311).unwrap(), Packet::Subscribe(p.clone()));
        assert_eq!(encode(&Packet::Subscribe(p), V311), bytes);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn golden_from_mosquitto_sub() {
        let f = |s: &'static str, q| (ByteStr::from_static(s), SubscriptionOptions::new(q));
        // `mosquitto_sub -V mqttv311 -t 'a/+' -t 'b/#' -q 1`
        let bytes = hex("820e00010003612f2b010003622f2301");
        let p = Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![f("a/+", QoS::AtLeastOnce), f("b/#", QoS::AtLeastOnce)],
        });
        assert_eq!(decode(&bytes, V311).unwrap(), p);
        assert_eq!(encode(&p, V311), bytes);
        // `-V mqttv31 -t 'a/+' -q 2`
        let bytes = hex("820800010003612f2b02");
        let p = Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![f("a/+", QoS::ExactlyOnce)],
        });
        assert_eq!(decode(&bytes, V31).unwrap(), p);
        assert_eq!(encode(&p, V31), bytes);
        // `-V mqttv5 -t 'a/+' -q 1 -D subscribe subscription-identifier 7
        //  -D subscribe user-property k v`
        let bytes = hex("82120001090b072600016b0001760003612f2b01");
        let mut properties = Properties::default();
        properties.make_mut().subscription_identifiers.push(7);
        properties
            .make_mut()
            .user_properties
            .push((ByteStr::from_static("k"), ByteStr::from_static("v")));
        let p = Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties,
            filters: vec![f("a/+", QoS::AtLeastOnce)],
        });
        assert_eq!(decode(&bytes, V5).unwrap(), p);
        assert_eq!(encode(&p, V5), bytes);
    }

    #[test]
    fn v5_options_and_identifier() {
        let opts = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        assert_eq!(opts.to_byte(V5), 0x2D);
        assert_eq!(opts.to_byte(V311), 0x01);
        let mut p = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(ByteStr::from_static("$share/g/x/#"), opts)],
        };
        p.properties
            .make_mut()
            .subscription_identifiers
            .push(268_435_455);
        let p = Packet::Subscribe(p);
        let bytes = encode(&p, V5);
        // property length 5: 0x0B and a four-byte varint.
        assert_eq!(&bytes[4..10], &[5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]);
        round_trip(&p, V5);
    }

    #[test]
    fn filters_are_only_checked_as_strings() {
        // "a/#/b" is not a valid filter, but that is the broker's call (SUBACK 0x8F).
        let bytes = [0x82, 10, 0, 1, 0, 5, b'a', b'/', b'#', b'/', b'b', 0];
        assert!(decode(&bytes, V311).is_ok());
    }

    #[test]
    fn malformed() {
        use DecodeError as E;
        let mal = ReasonCode::MALFORMED_PACKET;
        let proto = ReasonCode::PROTOCOL_ERROR;
        // Flags must be 0010 [MQTT-3.8.1-1].
        reject(
            &[0x80, 6, 0, 1, 0, 1, b'a', 0],
            V311,
            E::InvalidHeaderFlags {
                packet: "SUBSCRIBE",
                flags: 0,
            },
            mal,
        );
        // No filters [MQTT-3.8.3-3].
        reject(
            &[0x82, 2, 0, 1],
            V311,
            E::NoTopicFilters,
            ReasonCode::PROTOCOL_ERROR,
        );
        reject(
            &[0x82, 3, 0, 1, 0],
            V5,
            E::NoTopicFilters,
            ReasonCode::PROTOCOL_ERROR,
        );
        // Packet identifier 0.
        reject(&[0x82, 6, 0, 0, 0, 1, b'a', 0], V311, E::ZeroPacketId, mal);
        // Options byte missing.
        reject(&[0x82, 5, 0, 1, 0, 1, b'a'], V311, E::UnexpectedEof, mal);
        // QoS 3, and reserved bits: everything above QoS in 3.1.1 [MQTT-3-8.3-4].
        reject(
            &[0x82, 6, 0, 1, 0, 1, b'a', 3],
            V311,
            E::InvalidSubscriptionOptions(3),
            proto,
        );
        reject(
            &[0x82, 6, 0, 1, 0, 1, b'a', 4],
            V311,
            E::InvalidSubscriptionOptions(4),
            proto,
        );
        // MQTT 5: bits 6 and 7 reserved [MQTT-3.8.3-5]; Retain Handling 3 a Protocol Error.
        reject(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40],
            V5,
            E::InvalidSubscriptionOptions(0x40),
            mal,
        );
        reject(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30],
            V5,
            E::InvalidSubscriptionOptions(0x30),
            proto,
        );
        reject(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x03],
            V5,
            E::InvalidSubscriptionOptions(0x03),
            proto,
        );
        // Invalid UTF-8 filter.
        reject(&[0x82, 6, 0, 1, 0, 1, 0xFE, 0], V311, E::InvalidString, mal);
        // Subscription identifier 0, or twice.
        reject(
            &[0x82, 9, 0, 1, 2, 0x0B, 0, 0, 1, b'a', 0],
            V5,
            E::InvalidPropertyValue(0x0B),
            proto,
        );
        reject(
            &[0x82, 11, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0],
            V5,
            E::DuplicateProperty(0x0B),
            proto,
        );
    }
}

//! Property tests: `decode(encode(p)) == p` for every packet type in every version, with
//! packets generated valid for that version.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::properties::Allowed;
use crate::reason;
use crate::*;

fn byte_str() -> impl Strategy<Value = ByteStr> {
    "[a-zA-Z0-9/+# éü€\u{1F600}]{0,12}".prop_map(|s| ByteStr::try_from(s).unwrap())
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9/$é]{1,12}".prop_map(|s| ByteStr::try_from(s).unwrap())
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    (0u8..3).prop_map(|q| QoS::from_u8(q).unwrap())
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..2)
}

/// Any valid property set, restricted to what `allowed` permits.
fn properties(allowed: Allowed) -> impl Strategy<Value = Properties> {
    let a = (
        flag(),
        option::of(any::<u32>()),
        option::of(byte_str()),
        option::of(topic_name()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(byte_str()),
        option::of(any::<u16>()),
        option::of(byte_str()),
        option::of(binary()),
        flag(),
    );
    let b = (
        option::of(any::<u32>()),
        flag(),
        option::of(byte_str()),
        option::of(byte_str()),
        option::of(byte_str()),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u16..),
        flag(),
        flag(),
        vec((byte_str(), byte_str()), 0..3),
        option::of(1u32..),
    );
    let c = (flag(), flag(), flag());
    (a, b, c).prop_map(move |(a, b, c)| {
        Properties::from(crate::PropertyValues {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: a.8,
            authentication_method: a.9,
            authentication_data: a.10,
            request_problem_information: a.11,
            will_delay_interval: b.0,
            request_response_information: b.1,
            response_information: b.2,
            server_reference: b.3,
            reason_string: b.4,
            receive_maximum: b.5,
            topic_alias_maximum: b.6,
            topic_alias: b.7,
            maximum_qos: b.8,
            retain_available: b.9,
            user_properties: b.10,
            maximum_packet_size: b.11,
            wildcard_subscription_available: c.0,
            subscription_identifier_available: c.1,
            shared_subscription_available: c.2,
        })
        .only(allowed)
    })
}

/// Properties in MQTT 5, none before.
fn props_for(v: ProtocolVersion, allowed: Allowed) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        properties(allowed).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn reason_in(v: ProtocolVersion, table: &'static [u8]) -> BoxedStrategy<ReasonCode> {
    if v.is_v5() {
        proptest::sample::select(table).prop_map(ReasonCode).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    }
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = option::of((
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        props_for(v, Allowed::WILL),
    ))
    .prop_map(|w| {
        w.map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    });
    (
        any::<bool>(),
        any::<u16>(),
        props_for(v, Allowed::CONNECT),
        byte_str(),
        will,
        option::of(byte_str()),
        option::of(binary()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.1.1: no password without a user name [MQTT-3.1.2-22].
                let password = if v == ProtocolVersion::V311 && username.is_none() {
                    None
                } else {
                    password
                };
                Packet::from(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                    bridge: false,
                })
            },
        )
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if v.is_v5() {
        reason_in(v, reason::CONNACK)
    } else {
        (0u8..=5)
            .prop_map(|c| ReasonCode::from_v3_connack(c).unwrap())
            .boxed()
    };
    (any::<bool>(), reason, props_for(v, Allowed::CONNACK)).prop_map(
        move |(sp, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: sp && reason == ReasonCode::SUCCESS && v != ProtocolVersion::V31,
                reason,
                properties,
            })
        },
    )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        1u16..,
        props_for(v, Allowed::PUBLISH),
        binary(),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, id, mut properties, payload, empty)| {
                let at_least_once = qos != QoS::AtMostOnce;
                // MQTT 5: an empty topic with a topic alias.
                let topic = if v.is_v5() && empty {
                    properties.make_mut().topic_alias.get_or_insert(1);
                    ByteStr::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && at_least_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_least_once { id } else { 0 },
                    properties,
                    payload,
                })
            },
        )
}

fn pubresp(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let kinds = [
        (PacketType::PubAck, Allowed::PUBACK, reason::PUBACK),
        (PacketType::PubRec, Allowed::PUBREC, reason::PUBACK),
        (PacketType::PubRel, Allowed::PUBREL, reason::PUBREL),
        (PacketType::PubComp, Allowed::PUBCOMP, reason::PUBREL),
    ];
    proptest::sample::select(kinds.to_vec()).prop_flat_map(move |(kind, allowed, table)| {
        (1u16.., reason_in(v, table), props_for(v, allowed)).prop_map(
            move |(packet_id, reason, properties)| {
                let r = PubResp {
                    packet_id,
                    reason,
                    properties,
                };
                match kind {
                    PacketType::PubAck => Packet::PubAck(r),
                    PacketType::PubRec => Packet::PubRec(r),
                    PacketType::PubRel => Packet::PubRel(r),
                    _ => Packet::PubComp(r),
                }
            },
        )
    })
}

fn subscription_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if !v.is_v5() {
            return SubscriptionOptions::new(qos);
        }
        SubscriptionOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling: match rh {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            },
        }
    })
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        props_for(v, Allowed::SUBSCRIBE),
        vec((byte_str(), subscription_options(v)), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let table = if v.is_v5() {
        reason::SUBACK
    } else {
        reason::SUBACK_V3
    };
    (
        1u16..,
        props_for(v, Allowed::SUBACK),
        vec(proptest::sample::select(table).prop_map(ReasonCode), 0..4),
    )
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        props_for(v, Allowed::UNSUBSCRIBE),
        vec(byte_str(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = if v.is_v5() {
        vec(
            proptest::sample::select(reason::UNSUBACK).prop_map(ReasonCode),
            0..4,
        )
        .boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (1u16.., props_for(v, Allowed::UNSUBACK), reasons).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason_in(v, reason::DISCONNECT),
        props_for(v, Allowed::DISCONNECT),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        reason_in(ProtocolVersion::V5, reason::AUTH),
        properties(Allowed::AUTH),
    )
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Every packet valid in `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pubresp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V31),
        Just(ProtocolVersion::V311),
        Just(ProtocolVersion::V5)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_encode_round_trip((v, p) in version().prop_flat_map(|v| (Just(v), packet(v)))) {
        let mut buf = BytesMut::new();
        encode_packet(&p, v, &mut buf).unwrap();
        prop_assert_eq!(p.encoded_len(v).unwrap(), buf.len());
        let encoded = buf.clone();
        let back = decode_packet(&mut buf, v, u32::MAX).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &p);
        // Re-encoding is byte-for-byte stable.
        let mut again = BytesMut::new();
        encode_packet(&back, v, &mut again).unwrap();
        prop_assert_eq!(again, encoded);
    }

    #[test]
    fn truncated_input_waits(v in version(), p in version().prop_flat_map(packet)) {
        // Any strict prefix of a packet is "need more bytes", never an error (CONNECT is
        // decoded in its own version, so any `p` is fine for any connection `v`, except
        // packets that do not exist in `v`).
        let mut buf = BytesMut::new();
        if encode_packet(&p, v, &mut buf).is_ok() {
            for cut in 0..buf.len() {
                let mut part = BytesMut::from(&buf[..cut]);
                prop_assert_eq!(decode_packet(&mut part, v, u32::MAX), Ok(None));
                prop_assert_eq!(part.len(), cut);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in version(), bytes in vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(p)) = decode_packet(&mut buf, v, u32::MAX) {
            let mut out = BytesMut::new();
            encode_packet(&p, v, &mut out).unwrap();
            let again = decode_packet(&mut out, v, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(again, p);
        }
    }

    #[test]
    fn encoding_any_publish_never_panics_and_never_writes_malformed_flags(
        v in version(),
        dup: bool,
        q in 0u8..3,
        retain: bool,
        packet_id: u16,
        topic in byte_str(),
        payload in binary(),
    ) {
        let p = Packet::Publish(Publish {
            dup,
            qos: QoS::from_u8(q).unwrap(),
            retain,
            topic,
            packet_id,
            properties: Properties::default(),
            payload,
        });
        let mut buf = BytesMut::new();
        if encode_packet(&p, v, &mut buf).is_ok() {
            // Flags are always valid; the topic may not be (encoding does not judge it).
            let h = check_frame(&buf, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(h.frame_len(), buf.len());
            let _ = decode_packet(&mut buf, v, u32::MAX);
        } else {
            prop_assert!(q > 0 && packet_id == 0);
        }
    }
}

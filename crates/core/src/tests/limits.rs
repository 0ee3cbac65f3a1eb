//! Limits on what a client sends: topic length and levels, subscriptions per session,
//! publish rate, and the properties only the server may send.

use std::time::Duration;

use bytes::Bytes;
use tinsel_codec::{
    Packet, Properties, PropertyValues, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};

use super::{Sim, connect, msg, s};
use crate::connections::ConnId;
use crate::settings::RateAction;

fn subscribe(sim: &mut Sim, id: ConnId, filters: &[&str]) -> Vec<ReasonCode> {
    let sub = Subscribe {
        packet_id: 7,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|f| (s(f), SubscriptionOptions::default()))
            .collect(),
    };
    sim.r.handle(sim.now, id, Packet::Subscribe(sub));
    match &sim.out(id)[..] {
        [Packet::SubAck(a)] => a.reasons.clone(),
        other => panic!("{other:?}"),
    }
}

/// The DISCONNECT reason a closed connection was given (None: closed without one).
fn disconnect_reason(sim: &mut Sim, id: ConnId) -> Option<ReasonCode> {
    let (out, close) = sim.take(id);
    assert!(close, "closed: {out:?}");
    out.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason),
        _ => None,
    })
}

#[test]
fn topic_beyond_length_or_levels_is_refused_as_each_version_can_say() {
    let mut sim = Sim::new(|l| {
        l.max_topic_length = 20;
        l.max_topic_levels = 3;
    });
    let v5 = sim.open(connect("v5", ProtocolVersion::V5, 0));
    // Within: three levels, twenty bytes.
    sim.r.handle(
        sim.now,
        v5,
        msg("aaaaaa/bbbbbb/cccccc", QoS::AtLeastOnce, 1),
    );
    assert!(matches!(&sim.out(v5)[..], [Packet::PubAck(a)] if a.reason.is_success()));
    // QoS 1 and 2 over: PUBACK / PUBREC 0x90, still connected.
    sim.r
        .handle(sim.now, v5, msg("a/b/c/d", QoS::AtLeastOnce, 2));
    assert!(matches!(&sim.out(v5)[..],
        [Packet::PubAck(a)] if a.reason == ReasonCode::TOPIC_NAME_INVALID));
    sim.r.handle(
        sim.now,
        v5,
        msg("a23456789012345678901", QoS::ExactlyOnce, 3),
    );
    assert!(matches!(&sim.out(v5)[..],
        [Packet::PubRec(a)] if a.reason == ReasonCode::TOPIC_NAME_INVALID));
    assert!(!sim.closed(v5));
    // QoS 0 over: DISCONNECT 0x90.
    sim.r
        .handle(sim.now, v5, msg("a/b/c/d", QoS::AtMostOnce, 0));
    assert_eq!(
        disconnect_reason(&mut sim, v5),
        Some(ReasonCode::TOPIC_NAME_INVALID)
    );
    // MQTT 3.1.1: closed, whatever the QoS.
    let v3 = sim.open(connect("v3", ProtocolVersion::V311, 0));
    sim.r
        .handle(sim.now, v3, msg("a/b/c/d", QoS::AtLeastOnce, 1));
    assert_eq!(disconnect_reason(&mut sim, v3), None);
}

#[test]
fn filters_beyond_limits_and_quota_are_refused_one_by_one() {
    let mut sim = Sim::new(|l| {
        l.max_topic_levels = 3;
        l.max_subscriptions = 2;
    });
    let v5 = sim.open(connect("v5", ProtocolVersion::V5, 0));
    let r = subscribe(
        &mut sim,
        v5,
        &["a/+/c/#", "a/b", "$share/g/x/y/z", "c", "d"],
    );
    assert_eq!(
        r,
        [
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_0,
            // The group's prefix does not count as levels.
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QUOTA_EXCEEDED,
            ReasonCode::QUOTA_EXCEEDED,
        ]
    );
    // A filter the session holds is replaced, not counted again; one removed makes room.
    assert_eq!(
        subscribe(&mut sim, v5, &["a/b"]),
        [ReasonCode::GRANTED_QOS_0]
    );
    sim.r.handle(
        sim.now,
        v5,
        Packet::Unsubscribe(tinsel_codec::Unsubscribe {
            packet_id: 8,
            properties: Properties::default(),
            filters: vec![s("a/b")],
        }),
    );
    sim.out(v5);
    assert_eq!(subscribe(&mut sim, v5, &["c"]), [ReasonCode::GRANTED_QOS_0]);
    assert!(!sim.closed(v5));

    let v3 = sim.open(connect("v3", ProtocolVersion::V311, 0));
    assert_eq!(
        subscribe(&mut sim, v3, &["a/b/c/d", "a", "b", "c"]),
        [
            ReasonCode::UNSPECIFIED_ERROR,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::UNSPECIFIED_ERROR,
        ]
    );
    assert!(!sim.closed(v3));
}

#[test]
fn will_topic_beyond_limits_is_refused_at_connect() {
    let mut sim = Sim::new(|l| l.max_topic_levels = 2);
    let id = sim.r.accept(sim.now, super::origin(1)).0;
    let mut c = connect("w", ProtocolVersion::V5, 0);
    c.will = Some(super::will("a/b/c", None));
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    let (out, close) = sim.take(id);
    assert!(close);
    assert!(matches!(&out[..],
        [Packet::ConnAck(a)] if a.reason == ReasonCode::TOPIC_NAME_INVALID));
}

fn rated(sim: &mut Sim, id: ConnId, n: u16, qos: QoS) -> Vec<Packet> {
    for pid in 1..=n {
        let pid = if qos == QoS::AtMostOnce { 0 } else { pid };
        sim.r.handle(sim.now, id, msg("t", qos, pid));
    }
    sim.out(id)
}

#[test]
fn over_rate_publisher_is_disconnected_with_0x96_and_the_message_dropped() {
    let mut sim = Sim::new(|l| {
        l.max_publish_rate = 10;
        l.publish_burst = 3;
        l.publish_rate_action = RateAction::Disconnect;
    });
    let sub = sim.open(connect("sub", ProtocolVersion::V5, 0));
    sim.subscribe(sub, "t", QoS::AtMostOnce);
    let v5 = sim.open(connect("v5", ProtocolVersion::V5, 0));
    let acks = rated(&mut sim, v5, 3, QoS::AtLeastOnce);
    assert_eq!(acks.len(), 3);
    // A tenth of a second later: one more is within.
    sim.now += Duration::from_millis(100);
    assert_eq!(rated(&mut sim, v5, 1, QoS::AtLeastOnce).len(), 1);
    assert!(sim.r.take_throttle().is_none());
    sim.r.handle(sim.now, v5, msg("t", QoS::AtLeastOnce, 9));
    assert_eq!(
        disconnect_reason(&mut sim, v5),
        Some(ReasonCode::MESSAGE_RATE_TOO_HIGH)
    );
    // The subscriber got the four within, not the one over.
    assert_eq!(sim.out(sub).len(), 4);

    let v3 = sim.open(connect("v3", ProtocolVersion::V311, 0));
    rated(&mut sim, v3, 4, QoS::AtMostOnce);
    assert_eq!(disconnect_reason(&mut sim, v3), None);
}

#[test]
fn over_rate_publisher_is_throttled_and_nothing_is_lost() {
    let mut sim = Sim::new(|l| {
        l.max_publish_rate = 100;
        l.publish_burst = 2;
        l.max_publish_bytes_rate = 1000;
    });
    let sub = sim.open(connect("sub", ProtocolVersion::V311, 0));
    sim.subscribe(sub, "t", QoS::AtMostOnce);
    let id = sim.open(connect("p", ProtocolVersion::V5, 0));
    rated(&mut sim, id, 2, QoS::AtMostOnce);
    assert!(sim.r.take_throttle().is_none());
    sim.r.handle(sim.now, id, msg("t", QoS::AtMostOnce, 0));
    assert_eq!(
        sim.r.take_throttle(),
        Some(sim.now + Duration::from_millis(10))
    );
    assert!(sim.r.take_throttle().is_none(), "taken once");
    assert_eq!(sim.out(sub).len(), 3);
    assert!(!sim.closed(id));
    // Bytes: 1,500 bytes in one message from a full bucket pass, and hold the next back
    // until the bucket is within a second's worth again.
    sim.now += Duration::from_secs(1);
    let big = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s("t"),
        packet_id: 0,
        properties: Properties::default(),
        payload: Bytes::from(vec![0u8; 1500]),
    });
    sim.r.handle(sim.now, id, big);
    assert!(sim.r.take_throttle().is_none());
    sim.r.handle(sim.now, id, msg("t", QoS::AtMostOnce, 0));
    assert_eq!(
        sim.r.take_throttle(),
        Some(sim.now + Duration::from_millis(501))
    );
    assert_eq!(sim.out(sub).len(), 2);
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error() {
    let mut sim = Sim::new(|_| {});
    let id = sim.open(connect("c", ProtocolVersion::V5, 0));
    let p = Packet::Publish(Publish {
        properties: Properties::from(PropertyValues {
            subscription_identifiers: vec![4],
            ..Default::default()
        }),
        ..match msg("t", QoS::AtMostOnce, 0) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    });
    sim.r.handle(sim.now, id, p);
    assert_eq!(
        disconnect_reason(&mut sim, id),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn authentication_data_without_method_is_a_protocol_error() {
    let mut sim = Sim::new(|_| {});
    let id = sim.r.accept(sim.now, super::origin(1)).0;
    let mut c = connect("a", ProtocolVersion::V5, 0);
    c.properties.make_mut().authentication_data = Some(Bytes::from_static(b"x"));
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    let (out, close) = sim.take(id);
    assert!(close);
    assert!(matches!(&out[..],
        [Packet::ConnAck(a)] if a.reason == ReasonCode::PROTOCOL_ERROR));
}

#[test]
fn links_are_not_rate_limited() {
    let mut sim = Sim::new(|l| {
        l.max_publish_rate = 1;
        l.publish_burst = 1;
        l.publish_rate_action = RateAction::Disconnect;
    });
    let link = sim
        .r
        .accept(sim.now, crate::connections::Origin::Link("bridge".into()))
        .0;
    sim.r.handle(
        sim.now,
        link,
        Packet::Connect(Box::new(connect("link", ProtocolVersion::V5, 0))),
    );
    sim.out(link);
    rated(&mut sim, link, 10, QoS::AtMostOnce);
    assert!(!sim.closed(link));
    assert!(sim.r.take_throttle().is_none());
}

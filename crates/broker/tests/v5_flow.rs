//! MQTT 5 flow control, sizes, topic aliases, expiry, properties; QoS 2 exactly once;
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field
//! bad input; $SYS.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tinsel_codec::{Packet, ProtocolVersion::*, PubResp, QoS, ReasonCode};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn broker_respects_client_receive_maximum() {
    let b = TestBroker::start().await;
    let mut c = connect_packet("slow", V5, true);
    c.properties.make_mut().receive_maximum = Some(2);
    let (mut sub, _) = Peer::connect_with(b.addr, c).await;
    sub.subscribe("rm", QoS::AtLeastOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    for i in 0..5u16 {
        publ.publish(publish(
            "rm",
            &i.to_string(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        ))
        .await;
    }
    let m0 = sub.recv_publish().await;
    let m1 = sub.recv_publish().await;
    sub.expect_nothing(QUIET).await; // two in flight: the broker waits
    sub.ack(&m0).await;
    let m2 = sub.recv_publish().await;
    assert_eq!(&m2.payload[..], b"2");
    sub.expect_nothing(QUIET).await;
    sub.ack(&m1).await;
    sub.ack(&m2).await;
    for want in ["3", "4"] {
        let m = sub.recv_publish().await;
        assert_eq!(&m.payload[..], want.as_bytes());
        sub.ack(&m).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn client_exceeding_receive_maximum_gets_0x93() {
    let b = TestBroker::with(|c| c.limits.max_inflight = 2).await;
    let mut p = Peer::connect(b.addr, "greedy", V5).await;
    for pid in 1..=3u16 {
        p.send(publish("x", "q2", QoS::ExactlyOnce, false, pid))
            .await;
    }
    let seen = p.expect_closed().await;
    let last = seen.last().expect("packets");
    assert!(
        matches!(last, Packet::Disconnect(d) if d.reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{seen:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn maximum_packet_size_both_ways() {
    let b = TestBroker::with(|c| c.limits.max_packet_size = 200).await;
    let mut c = connect_packet("small", V5, true);
    c.properties.make_mut().maximum_packet_size = Some(60);
    let (mut sub, _) = Peer::connect_with(b.addr, c).await;
    sub.subscribe("mp", QoS::AtMostOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.publish(publish("mp", &"x".repeat(100), QoS::AtMostOnce, false, 0))
        .await;
    publ.publish(publish("mp", "fits", QoS::AtMostOnce, false, 0))
        .await;
    let m = sub.recv_publish().await;
    assert_eq!(
        &m.payload[..],
        b"fits",
        "too large for the subscriber: not sent"
    );

    // Larger than the broker's maximum: DISCONNECT 0x95.
    publ.send(publish("mp", &"x".repeat(300), QoS::AtMostOnce, false, 0))
        .await;
    let seen = publ.expect_closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PACKET_TOO_LARGE),
        "{seen:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn topic_aliases_both_ways() {
    let b = TestBroker::start().await;
    let mut c = connect_packet("aliased", V5, true);
    c.properties.make_mut().topic_alias_maximum = Some(2);
    let (mut sub, _) = Peer::connect_with(b.addr, c).await;
    sub.subscribe("ta/#", QoS::AtMostOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;

    // Client -> broker: set alias 1, then use it with an empty topic.
    let mut m = publish("ta/one", "a", QoS::AtMostOnce, false, 0);
    m.properties.make_mut().topic_alias = Some(1);
    publ.publish(m).await;
    let mut m = publish("", "b", QoS::AtLeastOnce, false, 3);
    m.topic = Default::default();
    m.properties.make_mut().topic_alias = Some(1);
    publ.publish(m).await;

    // Broker -> client: first with topic and alias, then the alias alone.
    let first = sub.recv_publish().await;
    assert_eq!(first.topic, "ta/one");
    let alias = first.properties.topic_alias.expect("alias assigned");
    assert!((1..=2).contains(&alias));
    let second = sub.recv_publish().await;
    assert!(second.topic.is_empty());
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(&second.payload[..], b"b");

    // Only two aliases: a third topic goes without one.
    publ.publish(publish("ta/two", "c", QoS::AtMostOnce, false, 0))
        .await;
    publ.publish(publish("ta/three", "d", QoS::AtMostOnce, false, 0))
        .await;
    assert!(sub.recv_publish().await.properties.topic_alias.is_some());
    let third = sub.recv_publish().await;
    assert_eq!(third.topic, "ta/three");
    assert_eq!(third.properties.topic_alias, None);

    // An alias above the broker's maximum: DISCONNECT 0x94.
    let mut m = publish("ta/x", "e", QoS::AtMostOnce, false, 0);
    m.properties.make_mut().topic_alias = Some(1000);
    publ.send(m).await;
    let seen = publ.expect_closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::TOPIC_ALIAS_INVALID)
    );
    b.stop().await;
}

#[tokio::test]
async fn properties_passed_through_and_expiry_counted_down() {
    let b = TestBroker::start().await;
    let mut c = connect_packet("later", V5, false);
    c.properties.make_mut().session_expiry_interval = Some(100);
    let (mut sub, _) = Peer::connect_with(b.addr, c.clone()).await;
    sub.subscribe("pp", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Default::default())).await;
    sub.expect_closed().await;

    let mut publ = Peer::connect(b.addr, "p", V5).await;
    let mut m = publish("pp", "{}", QoS::AtLeastOnce, false, 1);
    m.properties.make_mut().message_expiry_interval = Some(10);
    m.properties.make_mut().response_topic = Some(s("reply/here"));
    m.properties.make_mut().correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    m.properties.make_mut().content_type = Some(s("application/json"));
    m.properties.make_mut().payload_format_indicator = Some(1);
    m.properties.make_mut().user_properties = vec![(s("k"), s("v")), (s("k"), s("w"))];
    let sent = m.clone();
    publ.publish(m).await;
    let mut gone = publish("pp", "gone", QoS::AtLeastOnce, false, 2);
    gone.properties.make_mut().message_expiry_interval = Some(1);
    publ.publish(gone).await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut sub, ack) = Peer::connect_with(b.addr, c).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    let (p, q) = (&got.properties, &sent.properties);
    assert_eq!(p.response_topic, q.response_topic);
    assert_eq!(p.correlation_data, q.correlation_data);
    assert_eq!(p.content_type, q.content_type);
    assert_eq!(p.payload_format_indicator, q.payload_format_indicator);
    assert_eq!(p.user_properties, q.user_properties);
    assert_eq!(
        p.message_expiry_interval,
        Some(9),
        "10 s minus the 1 s it waited"
    );
    sub.ack(&got).await;
    sub.expect_nothing(QUIET).await; // the 1 s message expired in the queue
    b.stop().await;
}

#[tokio::test]
async fn qos2_exactly_once() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "s", V311).await;
    sub.subscribe("eo", QoS::ExactlyOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    let m = publish("eo", "once", QoS::ExactlyOnce, false, 42);
    publ.send(m.clone()).await;
    assert!(matches!(publ.recv().await, Packet::PubRec(r) if r.packet_id == 42));
    let mut again = m.clone();
    again.dup = true;
    publ.send(again).await; // repeated before PUBREL
    assert!(matches!(publ.recv().await, Packet::PubRec(r) if r.packet_id == 42));
    publ.send(Packet::PubRel(PubResp::new(42))).await;
    assert!(matches!(publ.recv().await, Packet::PubComp(r) if r.packet_id == 42));
    let got = sub.recv_publish().await;
    sub.ack(&got).await;
    sub.expect_nothing(QUIET).await;
    // After PUBREL the id is free again: a new message with it is forwarded.
    publ.publish(m).await;
    let got = sub.recv_publish().await;
    sub.ack(&got).await;
    b.stop().await;
}

#[tokio::test]
async fn v5_puback_reason_codes() {
    let b = TestBroker::start().await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.send(publish("nobody/here", "x", QoS::AtLeastOnce, false, 1))
        .await;
    match publ.recv().await {
        Packet::PubAck(a) => assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "s", V5).await;
    sub.subscribe("ok", QoS::AtMostOnce).await;
    let mut bad = Peer::connect(b.addr, "bad", V5).await;
    // PUBLISH with QoS 3.
    bad.send_raw(&[0x36, 0x04, 0x00, 0x01, b'x', 0x00]).await;
    let seen = bad.expect_closed().await;
    match &seen[..] {
        [Packet::Disconnect(d)] => {
            assert!(d.reason.0 >= 0x80);
            assert!(
                d.properties.reason_string.is_some(),
                "reason string explains"
            );
        }
        other => panic!("{other:?}"),
    }
    // Garbage from a 3.1.1 client: closed without a word.
    let mut bad3 = Peer::connect(b.addr, "bad3", V311).await;
    bad3.send_raw(&[0x00, 0x00]).await;
    assert!(bad3.expect_closed().await.is_empty());
    // Garbage before CONNECT.
    let mut raw = Peer::tcp(b.addr, V311).await;
    raw.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    raw.expect_closed().await;
    // The others never noticed.
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.publish(publish("ok", "still here", QoS::AtMostOnce, false, 0))
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"still here");
    b.stop().await;
}

#[tokio::test]
async fn sys_topics() {
    let b = TestBroker::with(|c| c.sys_interval = 1).await;
    let mut sub = Peer::connect(b.addr, "sys", V311).await;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 13 {
        let m = sub.recv_publish().await;
        seen.insert(
            m.topic.to_string(),
            String::from_utf8(m.payload.to_vec()).unwrap(),
        );
    }
    for t in [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
    ] {
        assert!(seen.contains_key(t), "missing {t}: {seen:?}");
    }
    assert!(seen["$SYS/broker/version"].starts_with("tinsel version"));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    // A wildcard at the start does not see $SYS.
    let mut all = Peer::connect(b.addr, "all", V311).await;
    all.subscribe("#", QoS::AtMostOnce).await;
    all.expect_nothing(Duration::from_millis(1300)).await;
    b.stop().await;
}

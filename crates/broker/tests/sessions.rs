//! Persistent sessions: queueing, resume, resend with DUP, PUBREL resend, expiry.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use std::time::Duration;

use common::*;
use tinsel_codec::{Disconnect, Packet, Properties, ProtocolVersion::*, PubResp, QoS, ReasonCode};

#[tokio::test]
async fn offline_queue_and_resume_v311() {
    let b = TestBroker::start().await;
    let (mut sub, ack) = Peer::connect_with(b.addr, connect_packet("durable", V311, false)).await;
    assert!(!ack.session_present);
    sub.subscribe("q/#", QoS::ExactlyOnce).await;
    sub.send(Packet::Disconnect(Disconnect::default())).await;
    sub.expect_closed().await;

    let mut publ = Peer::connect(b.addr, "p", V311).await;
    publ.publish(publish("q/0", "zero", QoS::AtMostOnce, false, 1))
        .await; // not queued
    publ.publish(publish("q/1", "one", QoS::AtLeastOnce, false, 2))
        .await;
    publ.publish(publish("q/2", "two", QoS::ExactlyOnce, false, 3))
        .await;

    let (mut sub, ack) = Peer::connect_with(b.addr, connect_packet("durable", V311, false)).await;
    assert!(ack.session_present);
    let m1 = sub.recv_publish().await;
    assert_eq!((m1.topic.as_str(), m1.qos), ("q/1", QoS::AtLeastOnce));
    sub.ack(&m1).await;
    let m2 = sub.recv_publish().await;
    assert_eq!((m2.topic.as_str(), m2.qos), ("q/2", QoS::ExactlyOnce));
    sub.ack(&m2).await;
    sub.expect_nothing(Duration::from_millis(200)).await;

    // Clean session discards it.
    let (_sub, ack) = Peer::connect_with(b.addr, connect_packet("durable", V311, true)).await;
    assert!(!ack.session_present);
    b.stop().await;
}

#[tokio::test]
async fn unacked_resent_with_dup_and_pubrel_resent() {
    let b = TestBroker::start().await;
    let (mut sub, _) = Peer::connect_with(b.addr, connect_packet("resend", V311, false)).await;
    sub.subscribe("r/#", QoS::ExactlyOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    publ.publish(publish("r/1", "one", QoS::AtLeastOnce, false, 1))
        .await;
    publ.publish(publish("r/2", "two", QoS::ExactlyOnce, false, 2))
        .await;
    let m1 = sub.recv_publish().await;
    let m2 = sub.recv_publish().await;
    assert!(!m1.dup && !m2.dup);
    // PUBREC the QoS 2 one, then vanish without PUBACK / PUBCOMP.
    sub.send(Packet::PubRec(PubResp::new(m2.packet_id))).await;
    match sub.recv().await {
        Packet::PubRel(r) => assert_eq!(r.packet_id, m2.packet_id),
        other => panic!("{other:?}"),
    }
    drop(sub);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (mut sub, ack) = Peer::connect_with(b.addr, connect_packet("resend", V311, false)).await;
    assert!(ack.session_present);
    let again = sub.recv_publish().await;
    assert!(again.dup, "resent with DUP");
    assert_eq!(again.packet_id, m1.packet_id);
    assert_eq!(&again.payload[..], b"one");
    match sub.recv().await {
        Packet::PubRel(r) => assert_eq!(r.packet_id, m2.packet_id),
        other => panic!("expected PUBREL resend, got {other:?}"),
    }
    sub.send(Packet::PubAck(PubResp::new(m1.packet_id))).await;
    sub.send(Packet::PubComp(PubResp::new(m2.packet_id))).await;
    sub.expect_nothing(Duration::from_millis(200)).await;
    b.stop().await;
}

#[tokio::test]
async fn queue_is_bounded_and_drops_newest() {
    let b = TestBroker::with(|c| c.limits.max_queued_messages = 3).await;
    let (mut sub, _) = Peer::connect_with(b.addr, connect_packet("bounded", V311, false)).await;
    sub.subscribe("b", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Disconnect::default())).await;
    sub.expect_closed().await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    for i in 0..10u16 {
        publ.publish(publish("b", &i.to_string(), QoS::AtLeastOnce, false, i + 1))
            .await;
    }
    let (mut sub, _) = Peer::connect_with(b.addr, connect_packet("bounded", V311, false)).await;
    for want in ["0", "1", "2"] {
        let m = sub.recv_publish().await;
        assert_eq!(&m.payload[..], want.as_bytes());
        sub.ack(&m).await;
    }
    sub.expect_nothing(Duration::from_millis(300)).await;
    b.stop().await;
}

fn v5_connect(id: &str, clean: bool, expiry: Option<u32>) -> tinsel_codec::Connect {
    let mut c = connect_packet(id, V5, clean);
    c.properties.make_mut().session_expiry_interval = expiry;
    c
}

#[tokio::test]
async fn v5_session_expiry() {
    let b = TestBroker::start().await;
    // Expiry 0 (default): nothing survives.
    let (mut p, _) = Peer::connect_with(b.addr, v5_connect("e0", false, None)).await;
    p.subscribe("x", QoS::AtLeastOnce).await;
    p.send(Packet::Disconnect(Disconnect::default())).await;
    p.expect_closed().await;
    let (_p, ack) = Peer::connect_with(b.addr, v5_connect("e0", false, None)).await;
    assert!(!ack.session_present);

    // Expiry 1 s: survives a quick reconnect, not a slow one.
    let (mut p, _) = Peer::connect_with(b.addr, v5_connect("e1", false, Some(1))).await;
    p.send(Packet::Disconnect(Disconnect::default())).await;
    p.expect_closed().await;
    let (mut p, ack) = Peer::connect_with(b.addr, v5_connect("e1", false, Some(1))).await;
    assert!(ack.session_present);
    p.send(Packet::Disconnect(Disconnect::default())).await;
    p.expect_closed().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_p, ack) = Peer::connect_with(b.addr, v5_connect("e1", false, Some(1))).await;
    assert!(!ack.session_present);
    b.stop().await;
}

#[tokio::test]
async fn v5_session_expiry_changed_at_disconnect() {
    let b = TestBroker::start().await;
    // Raised from 60 to "never" then lowered to 0 at DISCONNECT: the session ends.
    let (mut p, _) = Peer::connect_with(b.addr, v5_connect("chg", false, Some(60))).await;
    let mut d = Disconnect::default();
    d.properties.make_mut().session_expiry_interval = Some(0);
    p.send(Packet::Disconnect(d)).await;
    p.expect_closed().await;
    let (mut p, ack) = Peer::connect_with(b.addr, v5_connect("chg", false, Some(0))).await;
    assert!(!ack.session_present);

    // From 0 at CONNECT to non-zero at DISCONNECT: protocol error.
    let mut d = Disconnect::default();
    d.properties.make_mut().session_expiry_interval = Some(30);
    p.send(Packet::Disconnect(d)).await;
    let seen = p.expect_closed().await;
    match &seen[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }

    // Raised at DISCONNECT from 10 to 100: it survives.
    let (mut p, _) = Peer::connect_with(b.addr, v5_connect("up", false, Some(10))).await;
    let mut d = Disconnect::default();
    d.properties = Properties::from(tinsel_codec::PropertyValues {
        session_expiry_interval: Some(100),
        ..Default::default()
    });
    p.send(Packet::Disconnect(d)).await;
    p.expect_closed().await;
    let (_p, ack) = Peer::connect_with(b.addr, v5_connect("up", false, Some(10))).await;
    assert!(ack.session_present);
    b.stop().await;
}

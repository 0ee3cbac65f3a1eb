//! CONNECT handling: return codes, client ids, takeover, keep alive, timeouts.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use std::time::{Duration, Instant};

use common::*;
use tinsel_codec::{Packet, Properties, ProtocolVersion::*, QoS, ReasonCode, Will};

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_1() {
    let b = TestBroker::start().await;
    let mut p = Peer::tcp(b.addr, V311).await;
    // CONNECT, protocol "MQTT" level 9.
    p.send_raw(&[
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 9, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x',
    ])
    .await;
    let seen = p.expect_closed().await;
    match &seen[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn empty_client_id() {
    let b = TestBroker::start().await;
    // 3.1.1 with clean session 0: identifier rejected (return code 2).
    let (mut p, ack) = Peer::connect_with(b.addr, connect_packet("", V311, false)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    p.expect_closed().await;
    // 3.1.1 with clean session 1: accepted.
    let (_p, ack) = Peer::connect_with(b.addr, connect_packet("", V311, true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // 3.1: always refused.
    let (mut p, ack) = Peer::connect_with(b.addr, connect_packet("", V31, true)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    p.expect_closed().await;
    // 5.0: an identifier is assigned.
    let (mut p, ack) = Peer::connect_with(b.addr, connect_packet("", V5, false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let id = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id");
    assert!(!id.is_empty());
    // The assigned id is usable: a subscription works.
    p.subscribe("x", QoS::AtMostOnce).await;
    b.stop().await;
}

#[tokio::test]
async fn connack_v5_properties() {
    let b = TestBroker::with(|c| {
        c.limits.max_inflight = 7;
        c.limits.max_keep_alive = 10;
        c.limits.max_packet_size = 5000;
    })
    .await;
    let (_p, ack) = Peer::connect_with(b.addr, connect_packet("props", V5, true)).await;
    assert_eq!(ack.properties.receive_maximum, Some(7));
    assert_eq!(ack.properties.maximum_packet_size, Some(5000));
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(10),
        "keep alive 60 capped to 10"
    );
    assert!(ack.properties.topic_alias_maximum.unwrap_or(0) > 0);
    b.stop().await;
}

#[tokio::test]
async fn takeover_closes_old_connection_with_0x8e() {
    let b = TestBroker::start().await;
    let mut old = Peer::connect(b.addr, "same", V5).await;
    let mut new = Peer::connect(b.addr, "same", V5).await;
    let seen = old.expect_closed().await;
    match &seen[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("{other:?}"),
    }
    new.send(Packet::PingReq).await;
    assert_eq!(new.recv().await, Packet::PingResp);

    // 3.1.1: the old connection is simply closed.
    let mut old = Peer::connect(b.addr, "same3", V311).await;
    let _new = Peer::connect(b.addr, "same3", V311).await;
    assert!(old.expect_closed().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let b = TestBroker::start().await;
    let mut p = Peer::connect(b.addr, "twice", V5).await;
    p.send(connect_packet("twice", V5, true)).await;
    let seen = p.expect_closed().await;
    match &seen[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
    let mut p = Peer::connect(b.addr, "twice3", V311).await;
    p.send(connect_packet("twice3", V311, true)).await;
    assert!(p.expect_closed().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn first_packet_must_be_connect() {
    let b = TestBroker::start().await;
    let mut p = Peer::tcp(b.addr, V311).await;
    p.send(Packet::PingReq).await;
    assert!(p.expect_closed().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn connect_must_arrive_in_time() {
    let b = TestBroker::with(|c| c.limits.connect_timeout = 1).await;
    let mut p = Peer::tcp(b.addr, V311).await;
    let start = Instant::now();
    assert!(p.expect_closed().await.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(900));
    b.stop().await;
}

#[tokio::test]
async fn keep_alive_enforced_at_one_and_a_half() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V311).await;
    watcher.subscribe("will/ka", QoS::AtMostOnce).await;

    let mut c = connect_packet("sleepy", V5, true);
    c.keep_alive = 1;
    c.will = Some(Will {
        topic: s("will/ka"),
        payload: "gone".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (mut p, _) = Peer::connect_with(b.addr, c).await;
    let start = Instant::now();
    let seen = p.expect_closed().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}"
    );
    match &seen[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("{other:?}"),
    }
    // The will is published on keep-alive timeout.
    let will = watcher.recv_publish().await;
    assert_eq!(&will.payload[..], b"gone");

    // A client that pings in time stays connected.
    let mut c = connect_packet("awake", V311, true);
    c.keep_alive = 1;
    let (mut p, _) = Peer::connect_with(b.addr, c).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.send(Packet::PingReq).await;
        assert_eq!(p.recv().await, Packet::PingResp);
    }
    b.stop().await;
}

#[tokio::test]
async fn unsupported_auth_method_refused_with_0x8c() {
    let b = TestBroker::start().await;
    let mut c = connect_packet("auth", V5, true);
    c.properties.make_mut().authentication_method = Some(s("SCRAM-SHA-1"));
    let (mut p, ack) = Peer::connect_with(b.addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(ack.properties.reason_string.is_some(), "says why");
    p.expect_closed().await;
    b.stop().await;
}

#[tokio::test]
async fn connection_cap() {
    let b = TestBroker::with(|c| c.limits.max_connections = 1).await;
    let _first = Peer::connect(b.addr, "first", V311).await;
    let mut second = Peer::tcp(b.addr, V311).await;
    second.send(connect_packet("second", V311, true)).await;
    assert!(second.expect_closed().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn auth_packet_without_method_is_a_protocol_error() {
    let b = TestBroker::start().await;
    let mut p = Peer::connect(b.addr, "auth2", V5).await;
    p.send(Packet::Auth(tinsel_codec::Auth {
        reason: ReasonCode::RE_AUTHENTICATE,
        properties: Properties::default(),
    }))
    .await;
    let seen = p.expect_closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PROTOCOL_ERROR),
        "{seen:?}"
    );
    b.stop().await;
}

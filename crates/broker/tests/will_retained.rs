//! Wills and retained messages.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use std::time::{Duration, Instant};

use common::*;
use tinsel_codec::{Disconnect, Packet, Properties, ProtocolVersion::*, QoS, ReasonCode, Will};

const QUIET: Duration = Duration::from_millis(300);

fn with_will(
    id: &str,
    version: tinsel_codec::ProtocolVersion,
    delay: Option<u32>,
) -> tinsel_codec::Connect {
    let mut c = connect_packet(id, version, true);
    c.will = Some(Will {
        topic: s("w/t"),
        payload: format!("{id} died").into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::from(tinsel_codec::PropertyValues {
            will_delay_interval: delay,
            ..Default::default()
        }),
    });
    c
}

#[tokio::test]
async fn will_on_abnormal_disconnect_not_on_normal() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V311).await;
    watcher.subscribe("w/#", QoS::AtLeastOnce).await;
    for version in [V31, V311, V5] {
        // Socket dropped without DISCONNECT: the will is published.
        let (p, _) = Peer::connect_with(b.addr, with_will("crash", version, None)).await;
        drop(p);
        let m = watcher.recv_publish().await;
        assert_eq!(&m.payload[..], b"crash died");
        assert_eq!(m.qos, QoS::AtLeastOnce);
        watcher.ack(&m).await;

        // Normal DISCONNECT: no will.
        let (mut p, _) = Peer::connect_with(b.addr, with_will("polite", version, None)).await;
        p.send(Packet::Disconnect(Disconnect::default())).await;
        p.expect_closed().await;
        watcher.expect_nothing(QUIET).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn will_on_protocol_error() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V311).await;
    watcher.subscribe("w/#", QoS::AtMostOnce).await;
    let (mut p, _) = Peer::connect_with(b.addr, with_will("broken", V311, None)).await;
    p.send_raw(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).await; // remaining length too long
    p.expect_closed().await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"broken died");
    b.stop().await;
}

#[tokio::test]
async fn disconnect_with_will_0x04() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V5).await;
    watcher.subscribe("w/#", QoS::AtMostOnce).await;
    let (mut p, _) = Peer::connect_with(b.addr, with_will("asks", V5, None)).await;
    p.send(Packet::Disconnect(Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Properties::default(),
    }))
    .await;
    p.expect_closed().await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"asks died");
    b.stop().await;
}

#[tokio::test]
async fn will_delay() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V5).await;
    watcher.subscribe("w/#", QoS::AtMostOnce).await;

    // Delay 1 s with a session that outlives it: published after the delay.
    let mut c = with_will("late", V5, Some(1));
    c.properties.make_mut().session_expiry_interval = Some(60);
    let (p, _) = Peer::connect_with(b.addr, c).await;
    let start = Instant::now();
    drop(p);
    let m = watcher.recv_publish().await;
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "after {:?}",
        start.elapsed()
    );
    assert_eq!(&m.payload[..], b"late died");

    // Reconnecting before the delay cancels it.
    let mut c = with_will("back", V5, Some(2));
    c.clean_start = false;
    c.properties.make_mut().session_expiry_interval = Some(60);
    let (p, _) = Peer::connect_with(b.addr, c.clone()).await;
    drop(p);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.will = None;
    let (_p, ack) = Peer::connect_with(b.addr, c).await;
    assert!(ack.session_present);
    watcher.expect_nothing(Duration::from_millis(2500)).await;

    // Session expiry shorter than the delay: the will goes when the session ends.
    let mut c = with_will("short", V5, Some(100));
    c.properties.make_mut().session_expiry_interval = Some(1);
    let (p, _) = Peer::connect_with(b.addr, c).await;
    drop(p);
    let m = watcher.recv_publish().await;
    assert_eq!(&m.payload[..], b"short died");
    b.stop().await;
}

#[tokio::test]
async fn retained_store_replace_delete() {
    let b = TestBroker::start().await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    publ.publish(publish("r/a", "first", QoS::AtLeastOnce, true, 1))
        .await;
    publ.publish(publish("r/a", "second", QoS::ExactlyOnce, true, 2))
        .await;
    publ.publish(publish("r/b", "bee", QoS::AtMostOnce, true, 0))
        .await;

    let mut sub = Peer::connect(b.addr, "s", V311).await;
    sub.subscribe("r/+", QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub.recv_publish().await;
        assert!(m.retain);
        sub.ack(&m).await;
        got.push((
            m.topic.to_string(),
            String::from_utf8(m.payload.to_vec()).unwrap(),
            m.qos,
        ));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("r/a".into(), "second".into(), QoS::AtLeastOnce),
            ("r/b".into(), "bee".into(), QoS::AtMostOnce)
        ]
    );
    sub.expect_nothing(QUIET).await;

    // An empty retained payload deletes (and is forwarded to current subscribers).
    publ.publish(publish("r/a", "", QoS::AtMostOnce, true, 0))
        .await;
    let m = sub.recv_publish().await;
    assert!(m.payload.is_empty());
    let mut sub2 = Peer::connect(b.addr, "s2", V311).await;
    sub2.subscribe("r/a", QoS::AtMostOnce).await;
    sub2.expect_nothing(QUIET).await;
    b.stop().await;
}

#[tokio::test]
async fn retained_message_expiry() {
    let b = TestBroker::start().await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    let mut m = publish("exp/a", "short", QoS::AtMostOnce, true, 0);
    m.properties.make_mut().message_expiry_interval = Some(1);
    publ.publish(m).await;
    let mut m = publish("exp/b", "long", QoS::AtMostOnce, true, 0);
    m.properties.make_mut().message_expiry_interval = Some(100);
    publ.publish(m).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut sub = Peer::connect(b.addr, "s", V5).await;
    sub.subscribe("exp/#", QoS::AtMostOnce).await;
    let m = sub.recv_publish().await;
    assert_eq!(m.topic, "exp/b");
    let left = m.properties.message_expiry_interval.unwrap();
    assert!((98..=99).contains(&left), "expiry counted down: {left}");
    sub.expect_nothing(QUIET).await;
    b.stop().await;
}

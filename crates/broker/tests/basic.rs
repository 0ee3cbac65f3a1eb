//! Connect, subscribe, publish at every QoS over real TCP.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use common::*;
use tinsel_codec::{Packet, ProtocolVersion::*, QoS};

#[tokio::test]
async fn qos_matrix_both_versions() {
    let b = TestBroker::start().await;
    for version in [V31, V311, V5] {
        let mut sub = Peer::connect(b.addr, "sub", version).await;
        let mut publ = Peer::connect(b.addr, "pub", version).await;
        for sub_qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let ack = sub.subscribe("a/+/c", sub_qos).await;
            assert_eq!(ack.reasons[0].0, sub_qos as u8);
            for pub_qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                publ.publish(publish("a/b/c", "hello", pub_qos, false, 7))
                    .await;
                let got = sub.recv_publish().await;
                assert_eq!(got.topic, "a/b/c");
                assert_eq!(&got.payload[..], b"hello");
                assert_eq!(
                    got.qos,
                    pub_qos.min(sub_qos),
                    "{version} sub {sub_qos:?} pub {pub_qos:?}"
                );
                assert!(!got.retain);
                sub.ack(&got).await;
            }
        }
        publ.send(Packet::Disconnect(Default::default())).await;
        sub.send(Packet::Disconnect(Default::default())).await;
        publ.expect_closed().await;
        sub.expect_closed().await;
    }
    b.stop().await;
}

#[tokio::test]
async fn ping() {
    let b = TestBroker::start().await;
    let mut p = Peer::connect(b.addr, "pinger", V311).await;
    p.send(Packet::PingReq).await;
    assert_eq!(p.recv().await, Packet::PingResp);
    b.stop().await;
}

/// Pipelined load: many messages in flight at once, several subscribers, both versions;
/// slow subscribers slow the publisher down instead of losing messages.
#[tokio::test]
async fn pipelined_fan_out_delivers_everything_in_order() {
    // Far more than a session may queue (100): only backpressure on the publisher keeps
    // every message.
    const N: u16 = 3000;
    let b = TestBroker::with(|c| {
        c.limits.max_inflight = 20;
        c.limits.max_queued_messages = 100;
    })
    .await;
    let mut subs = Vec::new();
    for (i, version) in [V311, V5, V311].into_iter().enumerate() {
        let mut s = Peer::connect(b.addr, &format!("load{i}"), version).await;
        s.subscribe("load/+", QoS::AtLeastOnce).await;
        subs.push(s);
    }
    let mut publ = Peer::connect(b.addr, "loader", V311).await;
    let writer = tokio::spawn(async move {
        for i in 1..=N {
            publ.send(publish(
                "load/x",
                &i.to_string(),
                QoS::AtLeastOnce,
                false,
                i,
            ))
            .await;
        }
        let mut acks = 0;
        while acks < N {
            match publ.recv().await {
                Packet::PubAck(_) => acks += 1,
                other => panic!("{other:?}"),
            }
        }
    });
    let mut readers = Vec::new();
    for mut s in subs {
        readers.push(tokio::spawn(async move {
            for i in 1..=N {
                let m = s.recv_publish().await;
                assert_eq!(m.payload, i.to_string().as_bytes(), "in order");
                s.ack(&m).await;
            }
        }));
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
    })
    .await
    .expect("finished in time");
    b.stop().await;
}

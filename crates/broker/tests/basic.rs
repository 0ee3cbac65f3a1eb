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

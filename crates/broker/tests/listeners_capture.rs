//! Several listeners, the capture file, shutdown.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use common::*;
use tinsel_broker::{Broker, Config, ListenerConfig};
use tinsel_codec::{Packet, ProtocolVersion::*, QoS, ReasonCode};

#[tokio::test]
async fn two_listeners_share_one_broker() {
    let config = Config {
        listeners: vec![
            ListenerConfig {
                port: 0,
                ..ListenerConfig::default()
            },
            ListenerConfig {
                port: 0,
                ..ListenerConfig::default()
            },
        ],
        sys_interval: 0,
        ..Config::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let addrs = broker.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(broker.run(async move {
        let _ = rx.await;
    }));
    let mut sub = Peer::connect(addrs[0], "on0", V5).await;
    sub.subscribe("x", QoS::AtMostOnce).await;
    let mut publ = Peer::connect(addrs[1], "on1", V311).await;
    publ.publish(publish("x", "across", QoS::AtMostOnce, false, 0))
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"across");

    // Shutdown: MQTT 5 clients hear 0x8B, then every connection closes.
    tx.send(()).unwrap();
    let seen = sub.expect_closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{seen:?}"
    );
    publ.expect_closed().await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn port_taken_is_an_error() {
    let first = TestBroker::start().await;
    let config = Config {
        listeners: vec![ListenerConfig {
            port: first.addr.port(),
            ..ListenerConfig::default()
        }],
        ..Config::default()
    };
    let err = Broker::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    first.stop().await;
}

#[tokio::test]
async fn capture_records_the_connection() {
    let dir = std::env::temp_dir().join(format!("tinsel-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.pcapng");
    let p2 = path.clone();
    let b = TestBroker::with(move |c| c.capture = Some(p2)).await;
    let mut p = Peer::connect(b.addr, "captured", V311).await;
    p.publish(publish(
        "cap/topic",
        "captured-payload",
        QoS::AtLeastOnce,
        false,
        1,
    ))
    .await;
    p.send(Packet::Disconnect(Default::default())).await;
    p.expect_closed().await;
    b.stop().await;
    let bytes = std::fs::read(&path).unwrap();
    let needle = b"captured-payload";
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "payload in the capture ({} bytes)",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Idle connections park (no task, no tokio registration) and come back for everything:
//! messages for them, packets from the client, takeover, keep alive and shutdown.

mod common;

use std::time::Duration;

use common::*;
use tinsel_codec::{Packet, ProtocolVersion::*, QoS, ReasonCode};

/// Longer than the broker's park-after-idle time (1 s): every connection is parked.
const IDLE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn parked_connections_get_messages_and_answer_pings() {
    let b = TestBroker::start().await;
    let mut sub3 = Peer::connect(b.addr, "sub3", V311).await;
    let mut sub5 = Peer::connect(b.addr, "sub5", V5).await;
    sub3.subscribe("park/#", QoS::AtLeastOnce).await;
    sub5.subscribe("park/#", QoS::AtMostOnce).await;
    let mut publ = Peer::connect(b.addr, "pub", V311).await;
    for round in 0..3u16 {
        tokio::time::sleep(IDLE).await;
        // A message for parked subscribers, from a parked publisher.
        let topic = format!("park/{round}");
        publ.publish(publish(&topic, "wake", QoS::AtLeastOnce, false, round + 1))
            .await;
        for sub in [&mut sub3, &mut sub5] {
            let got = sub.recv_publish().await;
            assert_eq!(
                (got.topic.as_str(), &got.payload[..]),
                (&topic[..], &b"wake"[..])
            );
            sub.ack(&got).await;
        }
        tokio::time::sleep(IDLE).await;
        // A packet from the client wakes it too.
        sub3.send(Packet::PingReq).await;
        assert_eq!(sub3.recv().await, Packet::PingResp);
    }
    b.stop().await;
}

#[tokio::test]
async fn many_parked_subscribers_all_get_the_message() {
    const N: usize = 200;
    let b = TestBroker::start().await;
    let mut subs = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = Peer::connect(b.addr, &format!("s{i}"), V311).await;
        s.subscribe("all", QoS::AtMostOnce).await;
        subs.push(s);
    }
    tokio::time::sleep(IDLE).await;
    let mut publ = Peer::connect(b.addr, "pub", V311).await;
    publ.publish(publish("all", "hello", QoS::AtMostOnce, false, 0))
        .await;
    for s in &mut subs {
        assert_eq!(&s.recv_publish().await.payload[..], b"hello");
    }
    b.stop().await;
}

#[tokio::test]
async fn parked_connection_is_taken_over_and_closed_at_shutdown() {
    let b = TestBroker::start().await;
    let mut old = Peer::connect(b.addr, "same", V5).await;
    tokio::time::sleep(IDLE).await;
    let mut new = Peer::connect(b.addr, "same", V5).await;
    let packets = old.expect_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::SESSION_TAKEN_OVER),
        "{packets:?}"
    );
    tokio::time::sleep(IDLE).await;
    b.stop().await;
    let packets = new.expect_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{packets:?}"
    );
}

#[tokio::test]
async fn parked_connection_past_its_keep_alive_is_closed() {
    let b = TestBroker::start().await;
    let mut c = connect_packet("sleepy", V5, true);
    c.keep_alive = 1;
    let (mut peer, _) = Peer::connect_with(b.addr, c).await;
    // Parked after its CONNACK; 1.5 × keep alive later the broker closes it.
    let packets = peer.expect_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::KEEP_ALIVE_TIMEOUT),
        "{packets:?}"
    );
    b.stop().await;
}

/// New connections are served on the parking lot's thread when simple; the other shapes
/// of a first read go to a task and work the same.
#[tokio::test]
async fn split_pipelined_and_large_first_packets() {
    use tinsel_codec::encode_packet;
    let b = TestBroker::start().await;
    let bytes = |p: Packet| {
        let mut buf = bytes::BytesMut::new();
        encode_packet(&p, V311, &mut buf).unwrap();
        buf
    };
    // CONNECT in two pieces, 50 ms apart.
    let connect = bytes(Packet::Connect(Box::new(connect_packet(
        "split", V311, true,
    ))));
    let mut split = Peer::tcp(b.addr, V311).await;
    split.send_raw(&connect[..5]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    split.send_raw(&connect[5..]).await;
    assert!(matches!(split.recv().await, Packet::ConnAck(a) if a.reason.0 == 0));
    // CONNECT and SUBSCRIBE in one write.
    let mut both = bytes(Packet::Connect(Box::new(connect_packet(
        "both", V311, true,
    ))));
    let sub = tinsel_codec::Subscribe {
        packet_id: 1,
        properties: Default::default(),
        filters: vec![(s("big"), opts(QoS::AtLeastOnce))],
    };
    both.extend_from_slice(&bytes(Packet::Subscribe(sub)));
    let mut pipelined = Peer::tcp(b.addr, V311).await;
    pipelined.send_raw(&both).await;
    assert!(matches!(pipelined.recv().await, Packet::ConnAck(_)));
    assert!(matches!(pipelined.recv().await, Packet::SubAck(_)));
    // A parked publisher sends more than one small read's worth.
    let mut publ = Peer::connect(b.addr, "big-pub", V311).await;
    tokio::time::sleep(IDLE).await;
    let payload = "x".repeat(5000);
    publ.publish(publish("big", &payload, QoS::AtLeastOnce, false, 9))
        .await;
    let got = pipelined.recv_publish().await;
    assert_eq!(got.payload.len(), 5000);
    pipelined.ack(&got).await;
    // And a parked client's clean DISCONNECT closes it.
    tokio::time::sleep(IDLE).await;
    split.send(Packet::Disconnect(Default::default())).await;
    split.expect_closed().await;
    b.stop().await;
}

/// A parked client that sends a packet and closes at once, without DISCONNECT: the end is
/// noticed (its will goes out) even though one readiness event carried both.
#[tokio::test]
async fn parked_client_sending_then_closing_is_noticed() {
    let b = TestBroker::start().await;
    let mut watcher = Peer::connect(b.addr, "watcher", V311).await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let mut c = connect_packet("leaver", V311, true);
    c.will = Some(tinsel_codec::Will {
        topic: s("wills/leaver"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut leaver, _) = Peer::connect_with(b.addr, c).await;
    tokio::time::sleep(IDLE).await;
    let mut ping = bytes::BytesMut::new();
    tinsel_codec::encode_packet(&Packet::PingReq, V311, &mut ping).unwrap();
    use tokio::io::AsyncWriteExt;
    leaver.stream.write_all(&ping).await.unwrap();
    leaver.stream.shutdown().await.unwrap();
    let will = watcher.recv_publish().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/leaver", &b"gone"[..])
    );
    b.stop().await;
}

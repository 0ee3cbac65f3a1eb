//! When the broker closes a connection right after a DISCONNECT with a reason code or a
//! refusing CONNACK, a client that is still sending reads that packet and then the end of
//! the stream: no reset, no failed write.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use tinsel_codec::{Packet, ProtocolVersion, ProtocolVersion::*, QoS, ReasonCode, decode_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test client keeps sending after the broker closed it: well within the
/// broker's linger (2 s), which is what this checks.
const KEEP_SENDING: Duration = Duration::from_millis(500);

/// Encodes `packets` into one buffer.
fn encode(version: ProtocolVersion, packets: impl IntoIterator<Item = Packet>) -> BytesMut {
    let mut b = BytesMut::new();
    for p in packets {
        p.encode(version, &mut b).expect("encode");
    }
    b
}

/// Writes `chunk(i)` every few milliseconds for `KEEP_SENDING`; panics if a write fails.
async fn keep_sending(stream: &mut TcpStream, mut chunk: impl FnMut(usize) -> BytesMut) {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < KEEP_SENDING {
        if let Err(e) = stream.write_all(&chunk(i)).await {
            panic!("write {i} after {:?} failed: {e}", start.elapsed());
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads every packet up to the end of the stream; panics on a read error (a reset) or if
/// the stream is still open after `WAIT`.
async fn read_to_eof(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    v: ProtocolVersion,
) -> Vec<Packet> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        while let Some(p) = decode_packet(buf, v, u32::MAX).expect("decode") {
            seen.push(p);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => panic!("connection still open; saw {seen:?}"),
            Ok(Ok(0)) => return seen,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("read failed ({:?}: {e}) after {seen:?}", e.kind()),
        }
    }
}

fn qos2(pid: u16) -> Packet {
    publish("burst/x", &"q".repeat(100), QoS::ExactlyOnce, false, pid).into()
}

#[tokio::test]
async fn qos2_burst_beyond_receive_maximum_reads_0x93_then_eof() {
    let b = TestBroker::with(|c| c.limits.max_inflight = 10).await;
    let mut p = Peer::connect(b.addr, "burst", V5).await;
    // Far more than Receive Maximum, never a PUBREL, all in one write.
    let burst = encode(V5, (1..=200).map(qos2));
    p.stream.write_all(&burst).await.expect("burst");
    // The client goes on sending before it reads anything.
    keep_sending(&mut p.stream, |i| encode(V5, [qos2(201 + i as u16)])).await;
    let seen = read_to_eof(&mut p.stream, &mut p.buf, V5).await;
    let (last, acks) = seen.split_last().expect("packets");
    assert!(
        matches!(last, Packet::Disconnect(d) if d.reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{seen:?}"
    );
    assert_eq!(acks.len(), 10, "{seen:?}");
    assert!(
        acks.iter().all(|a| matches!(a, Packet::PubRec(_))),
        "{seen:?}"
    );
    b.stop().await;
}

/// A CONNECT refused for its protocol level: CONNACK 0x01 (0x84 in MQTT 5's terms).
const CONNECT_LEVEL_9: &[u8] = &[
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 9, 0x02, 0, 60, 0, 1, b'x',
];

/// Connects with `connect`, which the broker refuses; keeps sending garbage; must read the
/// CONNACK with `code` (its MQTT 5 form) and then the end of the stream.
async fn refused_then_garbage(b: &TestBroker, connect: &[u8], code: ReasonCode) {
    let mut s = TcpStream::connect(b.addr).await.expect("connect");
    s.write_all(connect).await.expect("CONNECT");
    // The CONNECT is handled on its own, the garbage comes after the CONNACK.
    tokio::time::sleep(Duration::from_millis(50)).await;
    keep_sending(&mut s, |_| BytesMut::from(&[0xF0u8; 64][..])).await;
    let mut buf = BytesMut::new();
    let seen = read_to_eof(&mut s, &mut buf, V311).await;
    match &seen[..] {
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason, code, "{ack:?}"),
        other => panic!("expected one CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn refusing_connack_then_garbage_reads_connack_then_eof() {
    let b = TestBroker::with(|c| c.limits.max_keep_alive = 30).await;
    // MQTT 3.1.1 cannot be told a smaller keep alive: refused (identifier rejected: 2,
    // 0x85 in MQTT 5's terms).
    let mut c = connect_packet("ka", V311, true);
    c.keep_alive = 60;
    refused_then_garbage(
        &b,
        &encode(V311, [c.into()]),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    )
    .await;
    refused_then_garbage(
        &b,
        CONNECT_LEVEL_9,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn refusing_connack_from_a_connection_task_then_garbage_reads_connack_then_eof() {
    // With capture, connections are accepted by tokio tasks, not the parking lot's thread.
    let dir = std::env::temp_dir().join(format!("tinsel-close-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("close.pcap");
    let p2 = path.clone();
    let b = TestBroker::with(move |c| c.capture = Some(p2)).await;
    refused_then_garbage(
        &b,
        CONNECT_LEVEL_9,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    )
    .await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_while_a_client_sends_reads_0x8b_then_eof_and_lingers_briefly() {
    let b = TestBroker::start().await;
    let p = Peer::connect(b.addr, "chatty", V5).await;
    let (mut rd, mut wr) = p.stream.into_split();
    let writer = tokio::spawn(async move {
        let ping = encode(V5, [Packet::PingReq]);
        let start = Instant::now();
        // Longer than any linger; stops at the reset that ends the broker's.
        while start.elapsed() < Duration::from_secs(3) {
            if wr.write_all(&ping).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Never closes its side.
        wr
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    let stop = tokio::spawn(b.stop());
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    loop {
        while let Some(p) = decode_packet(&mut buf, V5, u32::MAX).expect("decode") {
            seen.push(p);
        }
        match tokio::time::timeout(WAIT, rd.read_buf(&mut buf)).await {
            Err(_) => panic!("still open; saw {seen:?}"),
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("read failed ({:?}: {e}) after {seen:?}", e.kind()),
        }
    }
    assert!(
        matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{seen:?}"
    );
    stop.await.unwrap();
    // A client that never closes does not hold the stop for the whole linger (2 s), let
    // alone the grace period (5 s): the shutdown's linger is short.
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_lingering_socket_holds_neither_the_connection_limit_nor_a_stop() {
    let b = TestBroker::with(|c| {
        c.limits.max_connections = 1;
        c.limits.max_inflight = 1;
    })
    .await;
    let mut p = Peer::connect(b.addr, "first", V5).await;
    p.stream
        .write_all(&encode(V5, (1..=3).map(qos2)))
        .await
        .unwrap();
    let seen = read_to_eof(&mut p.stream, &mut p.buf, V5).await;
    assert!(
        matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{seen:?}"
    );
    // `p` stays open (its socket lingers on the broker's side), well within the linger.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = Peer::connect(b.addr, "second", V5).await;
    // Nor does it hold a stop for the rest of its linger (2 s).
    let stopping = Instant::now();
    b.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    drop(p);
}

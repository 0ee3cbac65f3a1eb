//! A real broker on 127.0.0.1 port 0 and a scripted peer that sends exact packets.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tinsel_broker::{Broker, Config, ListenerConfig};
use tinsel_codec::{
    ByteStr, ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions, decode_packet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut Config)) -> TestBroker {
        let mut config = Config {
            listeners: vec![ListenerConfig {
                port: 0,
                ..ListenerConfig::default()
            }],
            sys_interval: 0,
            ..Config::default()
        };
        f(&mut config);
        Self::serve(Broker::bind(config).await.expect("bind"))
    }

    /// Runs `broker`, bound already (with whatever seams the test installed), until
    /// [`TestBroker::stop`].
    pub fn serve(broker: Broker) -> TestBroker {
        let addr = broker.local_addrs()[0];
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            broker
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .expect("run");
        });
        TestBroker {
            addr,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(WAIT, h).await;
        }
    }
}

pub fn s(x: &str) -> ByteStr {
    ByteStr::try_from(x).unwrap()
}

pub fn connect_packet(id: &str, version: ProtocolVersion, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: s(id),
        will: None,
        username: None,
        password: None,
        bridge: false,
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, retain: bool, pid: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: s(topic),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { pid },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

pub struct Peer {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Peer {
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> Peer {
        Peer {
            stream: TcpStream::connect(addr).await.expect("tcp connect"),
            buf: BytesMut::new(),
            version,
        }
    }

    /// TCP connect + CONNECT; returns the peer and the CONNACK.
    pub async fn connect_with(addr: SocketAddr, c: Connect) -> (Peer, ConnAck) {
        let mut p = Peer::tcp(addr, c.protocol).await;
        p.send(c).await;
        match p.recv().await {
            Packet::ConnAck(ack) => (p, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn connect(addr: SocketAddr, id: &str, version: ProtocolVersion) -> Peer {
        let (p, ack) = Self::connect_with(addr, connect_packet(id, version, true)).await;
        assert_eq!(ack.reason.0, 0, "CONNACK {ack:?}");
        p
    }

    pub async fn send(&mut self, packet: impl Into<Packet>) {
        let mut b = BytesMut::new();
        packet.into().encode(self.version, &mut b).expect("encode");
        self.stream.write_all(&b).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, or None on EOF / timeout.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode_packet(&mut self.buf, self.version, u32::MAX).expect("decode") {
                return Some(p);
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn recv(&mut self) -> Packet {
        self.try_recv(WAIT)
            .await
            .expect("expected a packet, got EOF or timeout")
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts nothing arrives within `wait` (the connection stays open).
    pub async fn expect_nothing(&mut self, wait: Duration) {
        if let Some(p) = self.try_recv(wait).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Reads until EOF; returns the packets seen before it. Panics if the connection is
    /// still open after `WAIT`.
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            while let Ok(Some(p)) = decode_packet(&mut self.buf, self.version, u32::MAX) {
                seen.push(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!("connection still open; saw {seen:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return seen,
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn subscribe_opts(
        &mut self,
        pid: u16,
        filter: &str,
        o: SubscriptionOptions,
    ) -> SubAck {
        self.subscribe_with(Subscribe {
            packet_id: pid,
            properties: Properties::default(),
            filters: vec![(s(filter), o)],
        })
        .await
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_opts(1, filter, opts(qos)).await
    }

    pub async fn subscribe_with(&mut self, sub: Subscribe) -> SubAck {
        self.send(sub).await;
        match self.recv().await {
            Packet::SubAck(a) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow.
    pub async fn publish(&mut self, p: Publish) {
        let qos = p.qos;
        let pid = p.packet_id;
        self.send(p).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv().await {
                Packet::PubAck(a) => assert_eq!(a.packet_id, pid),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv().await {
                    Packet::PubRec(a) => assert_eq!(a.packet_id, pid),
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(Packet::PubRel(PubResp::new(pid))).await;
                match self.recv().await {
                    Packet::PubComp(a) => assert_eq!(a.packet_id, pid),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// Acknowledges a received PUBLISH (completing QoS 2 too).
    pub async fn ack(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubResp::new(p.packet_id))).await,
            QoS::ExactlyOnce => {
                self.send(Packet::PubRec(PubResp::new(p.packet_id))).await;
                match self.recv().await {
                    Packet::PubRel(r) => assert_eq!(r.packet_id, p.packet_id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(PubResp::new(p.packet_id))).await;
            }
        }
    }
}

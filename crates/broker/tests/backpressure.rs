//! A QoS 0 flood towards a subscriber that reads slowly, over real TCP.
//!
//! The broker runs on its own two-thread runtime; every client is a blocking socket on its
//! own thread with timeouts, so a broker that stops scheduling its tasks makes the test
//! fail instead of hang.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{TestBroker, connect_packet, opts, s};
use tinsel_codec::{Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe, decode_packet};

const V: ProtocolVersion = ProtocolVersion::V311;
const TOPIC: &str = "flood/q0";
/// The flood stops here at the latest, whatever happens.
const FLOOD_LIMIT: Duration = Duration::from_secs(20);
/// Messages the flood sends at most.
const FLOOD_MAX: u64 = 5_000_000;
/// Messages per write.
const BATCH: u64 = 512;
/// Messages the subscriber must get while the flood goes on, once it reads again.
const WANT: u64 = 5_000;
/// Longest wait for any one reply.
const WAIT: Duration = Duration::from_secs(5);

/// A blocking MQTT client with a read timeout.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr, id: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        c.send(Packet::Connect(Box::new(connect_packet(id, V, true))));
        match c.recv() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.reason.0, 0, "{a:?}"),
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
        c
    }

    fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        p.encode(V, &mut b).expect("encode");
        self.stream.write_all(&b).expect("write");
    }

    /// The next packet; None on EOF or when nothing came for `WAIT`.
    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode_packet(&mut self.buf, V, u32::MAX).expect("decode") {
                return Some(p);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// PINGREQ; true if PINGRESP came back in time.
    fn ping(&mut self) -> bool {
        self.send(Packet::PingReq);
        loop {
            match self.recv() {
                Some(Packet::PingResp) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

fn publish(payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s(TOPIC),
        packet_id: 0,
        properties: Properties::default(),
        payload,
    })
}

/// Publishes numbered QoS 0 messages as fast as the socket takes them until `stop`, the
/// count limit or the time limit. Returns how many were written whole.
fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut c = Client::connect(addr, "flooder");
    // Short write timeouts: a broker pushing back blocks the writes; look at `stop` often.
    c.stream
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut seq = 0u64;
    let mut b = BytesMut::new();
    while !stop.load(Ordering::Relaxed) && seq < FLOOD_MAX && start.elapsed() < FLOOD_LIMIT {
        b.clear();
        for _ in 0..BATCH {
            let payload = Bytes::copy_from_slice(&seq.to_be_bytes());
            publish(payload).encode(V, &mut b).expect("encode");
            seq += 1;
        }
        let mut off = 0;
        while off < b.len() {
            match c.stream.write(&b[off..]) {
                Ok(n) => off += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // Finish the batch whatever happens: the stream must stay well framed.
                    if start.elapsed() >= FLOOD_LIMIT + WAIT {
                        panic!("the broker stopped reading the flooder for good");
                    }
                }
                Err(e) => panic!("flood write: {e}"),
            }
        }
    }
    seq
}

#[test]
fn qos0_flood_to_a_slow_subscriber_keeps_the_broker_delivering() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = rt.block_on(TestBroker::start());
    let addr = broker.addr;

    let mut sub = Client::connect(addr, "slow-sub");
    sub.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(s(TOPIC), opts(QoS::AtMostOnce))],
    }));
    assert!(matches!(sub.recv(), Some(Packet::SubAck(_))));
    let mut other = Client::connect(addr, "bystander");

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || flood(addr, stop))
    };

    // The subscriber reads nothing for a second: its socket fills up and the broker must
    // neither spin nor stop serving others.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        other.ping(),
        "no PINGRESP during the flood (subscriber not reading)"
    );
    std::thread::sleep(Duration::from_millis(700));

    // It reads again: messages keep coming while the flood goes on, in order.
    let mut got = 0u64;
    let mut last: Option<u64> = None;
    while got < WANT {
        match sub.recv() {
            Some(Packet::Publish(p)) => {
                let seq = u64::from_be_bytes(p.payload[..8].try_into().expect("8 bytes"));
                assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
                last = Some(seq);
                got += 1;
            }
            Some(other) => panic!("subscriber: unexpected {other:?}"),
            None => panic!("subscriber: nothing for {WAIT:?} after {got} messages"),
        }
    }
    assert!(
        !flooder.is_finished(),
        "the flood ended before the subscriber got {WANT} messages"
    );
    assert!(
        other.ping(),
        "no PINGRESP during the flood (subscriber reading)"
    );

    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().expect("flooder");
    assert!(sent >= got, "sent {sent}, received {got}");

    // After the flood, a new message still reaches the subscriber (behind what is left of
    // the flood). QoS 0 may be dropped while the broker catches up: send it again after
    // each quiet half second.
    sub.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut after = 0u64;
    let mut tries = 0;
    other.send(publish(Bytes::from_static(b"end")));
    loop {
        match sub.recv() {
            Some(Packet::Publish(p)) if &p.payload[..] == b"end" => break,
            Some(Packet::Publish(p)) => {
                after += 1;
                last = Some(u64::from_be_bytes(
                    p.payload[..8].try_into().expect("8 bytes"),
                ));
            }
            None if tries < 20 => {
                tries += 1;
                other.send(publish(Bytes::from_static(b"end")));
            }
            other => panic!(
                "subscriber: expected the last message, got {other:?} \
                 ({after} flood messages after the flood, the last {last:?} of {sent})"
            ),
        }
    }
    assert!(other.ping());

    rt.block_on(broker.stop());
    rt.shutdown_timeout(Duration::from_secs(1));
}

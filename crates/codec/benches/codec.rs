//! Codec benchmarks: decode and encode of a PUBLISH with a 64-byte payload (3.1.1 and 5.0)
//! and of a CONNECT, plus the encode-once fan-out path.
//!
//! Run with `cargo bench -p tinsel-codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tinsel_codec::{
    ByteStr, Connect, EncodedPublish, Packet, Properties, ProtocolVersion, Publish, QoS,
    decode_packet, encode_packet,
};

fn publish(v: ProtocolVersion) -> Packet {
    let mut p = Publish::new(
        ByteStr::from_static("sensors/kitchen/temperature"),
        Bytes::from(vec![0x5Au8; 64]),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = 42;
    if v.is_v5() {
        p.properties.make_mut().message_expiry_interval = Some(60);
        p.properties.make_mut().topic_alias = Some(3);
    }
    Packet::Publish(p)
}

fn connect(v: ProtocolVersion) -> Packet {
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.make_mut().session_expiry_interval = Some(3600);
        properties.make_mut().receive_maximum = Some(20);
    }
    Packet::from(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        properties,
        client_id: ByteStr::from_static("tinsel-bench-client"),
        will: None,
        username: Some(ByteStr::from_static("user")),
        password: Some(Bytes::from_static(b"secret")),
        bridge: false,
    })
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, v: ProtocolVersion) {
    let mut encoded = BytesMut::new();
    encode_packet(packet, v, &mut encoded).expect("encode");
    let encoded = encoded.freeze();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("decode", |b| {
        // The copy into a read buffer is set-up, not measured.
        b.iter_batched(
            || BytesMut::from(&encoded[..]),
            |mut buf| black_box(decode_packet(&mut buf, v, u32::MAX).expect("decode")),
            BatchSize::SmallInput,
        )
    });
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_packet(black_box(packet), v, &mut out).expect("encode");
            black_box(out.len())
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_packet(
        c,
        "publish64_v311",
        &publish(ProtocolVersion::V311),
        ProtocolVersion::V311,
    );
    bench_packet(
        c,
        "publish64_v5",
        &publish(ProtocolVersion::V5),
        ProtocolVersion::V5,
    );
    bench_packet(
        c,
        "connect_v311",
        &connect(ProtocolVersion::V311),
        ProtocolVersion::V311,
    );
    bench_packet(
        c,
        "connect_v5",
        &connect(ProtocolVersion::V5),
        ProtocolVersion::V5,
    );

    // Fan-out: one encoding written to 100 subscribers with their own packet ids.
    let Packet::Publish(p) = publish(ProtocolVersion::V5) else {
        unreachable!()
    };
    let shared = EncodedPublish::new(&p, ProtocolVersion::V5).expect("encode");
    let mut out = BytesMut::with_capacity(100 * shared.len());
    c.bench_function("publish64_v5_fanout_100", |b| {
        b.iter(|| {
            out.clear();
            for id in 1..=100u16 {
                shared.write_to(id, false, &mut out).expect("write");
            }
            black_box(out.len())
        })
    });
}

criterion_group!(codec, benches);
criterion_main!(codec);

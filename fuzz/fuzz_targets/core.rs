//! Drives the broker core (`tinsel-core`) with arbitrary event sequences from up to eight
//! connections: accepts, raw bytes through the decoder, structured packets built from the
//! input, lost connections, time passing and shutdown. Asserts that nothing panics and that
//! every outbox holds only whole packets that decode and re-encode to the same bytes.

#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tinsel_codec::{
    ByteStr, Connect, Disconnect, Packet, Properties, PropertyValues, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};
use tinsel_core::{Limits, Origin, Outbox, Router, Settings};

const SLOTS: usize = 8;
const IDS: &[&str] = &["a", "b", "c", ""];
const TOPICS: &[&str] = &["t/a", "t/b", "t/a/x", "s/a", "w/a"];
const FILTERS: &[&str] = &[
    "t/a", "t/+", "t/#", "#", "+/a", "$share/g/t/#", "$share/g/s/+", "w/#", "t/a/x", "bad/#/x",
];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }
    fn pick<'s>(&mut self, xs: &[&'s str]) -> Option<&'s str> {
        Some(xs[usize::from(self.byte()?) % xs.len()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

#[derive(Default)]
struct Slot {
    conn: u64,
    out: Outbox,
    version: Option<ProtocolVersion>,
    read: BytesMut,
}

fn s(x: &str) -> ByteStr {
    ByteStr::try_from(x).unwrap()
}

fn qos(b: u8) -> QoS {
    QoS::from_u8(b % 3).unwrap()
}

fn version(b: u8) -> ProtocolVersion {
    [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5][usize::from(b % 3)]
}

/// Takes every connection's output and checks it: whole packets, stable re-encoding.
fn drain(r: &mut Router, slots: &mut [Option<Slot>], now: Instant) {
    r.wake(None, |_, _| {});
    let _ = r.take_work();
    for _ in 0..4 {
        let mut closed = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let taken = slot.out.take(None);
            let v = slot.version.unwrap_or(ProtocolVersion::V311);
            let mut bytes = taken.bytes;
            while !bytes.is_empty() {
                let before = bytes.clone();
                let p = tinsel_codec::decode_packet(&mut bytes, v, u32::MAX)
                    .unwrap_or_else(|e| {
                        panic!("broker wrote a malformed packet ({v}, first byte {:#04x}): {e}", before[0])
                    })
                    .expect("broker wrote a partial packet");
                let used = before.len() - bytes.len();
                let mut again = BytesMut::new();
                p.encode(v, &mut again).expect("re-encodes");
                assert_eq!(&again[..], &before[..used], "re-encoding {p:?} is not stable");
            }
            if taken.close {
                closed.push(i);
            }
        }
        if closed.is_empty() {
            return;
        }
        for i in closed {
            let slot = slots[i].take().unwrap();
            r.connection_lost(now, slot.conn, "closed");
        }
        r.wake(None, |_, _| {});
        let _ = r.take_work();
    }
}

fn handle(r: &mut Router, slot: &mut Slot, now: Instant, p: Packet) {
    if let Packet::Connect(c) = &p
        && slot.version.is_none()
    {
        slot.version = Some(c.protocol);
    }
    r.handle(now, slot.conn, p);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let limits = Limits {
        max_inflight: 3,
        max_queued_messages: 5,
        max_queued_bytes: 256,
        max_packet_size: 1024,
        topic_alias_maximum: 2,
        max_keep_alive: 60,
        ..Limits::default()
    };
    let settings = Settings {
        limits,
        sys_interval: Some(Duration::from_secs(10)),
        id_seed: 1,
        ..Settings::default()
    };
    let base = Instant::now();
    let mut now = base;
    let mut r = Router::new(settings, now);
    let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
    let mut port = 1u16;
    while let Some(op) = input.byte() {
        let i = usize::from(op >> 4) % SLOTS;
        match op & 0x0f {
            0 => {
                if slots[i].is_none() {
                    port = port.wrapping_add(1);
                    let (conn, out) = r.accept(now, Origin::Network(([10, 0, 0, 1], port).into()));
                    slots[i] = Some(Slot {
                        conn,
                        out,
                        ..Slot::default()
                    });
                }
            }
            1 => {
                // Raw bytes through the decoder, as the shell does.
                let Some(n) = input.byte() else { break };
                let chunk = input.bytes(usize::from(n)).to_vec();
                let Some(slot) = &mut slots[i] else { continue };
                slot.read.extend_from_slice(&chunk);
                let v = slot.version.unwrap_or(ProtocolVersion::V311);
                loop {
                    match tinsel_codec::decode_packet(&mut slot.read, v, 1024) {
                        Ok(Some(p)) => handle(&mut r, slot, now, p),
                        Ok(None) => break,
                        Err(e) => {
                            r.decode_error(now, slot.conn, &e);
                            slot.read.clear();
                            break;
                        }
                    }
                }
            }
            2 => {
                let (Some(a), Some(b), Some(id)) = (input.byte(), input.byte(), input.pick(IDS))
                else {
                    break;
                };
                let Some(slot) = &mut slots[i] else { continue };
                let v = version(a);
                let mut properties = Properties::default();
                if v.is_v5() {
                    properties = Properties::from(PropertyValues {
                        session_expiry_interval: [None, Some(0), Some(5), Some(u32::MAX)]
                            [usize::from(b >> 4) % 4],
                        receive_maximum: (b & 0x40 != 0).then_some(1),
                        topic_alias_maximum: (b & 0x80 != 0).then_some(2),
                        maximum_packet_size: (a & 0x80 != 0).then_some(64),
                        ..PropertyValues::default()
                    });
                }
                let will = (a & 0x08 != 0).then(|| Will {
                    topic: s("w/a"),
                    payload: Bytes::from_static(b"will"),
                    qos: qos(a >> 4),
                    retain: a & 0x40 != 0,
                    properties: if v.is_v5() && a & 0x20 != 0 {
                        Properties::from(PropertyValues {
                            will_delay_interval: Some(2),
                            ..PropertyValues::default()
                        })
                    } else {
                        Properties::default()
                    },
                });
                let c = Connect {
                    protocol: v,
                    clean_start: b & 1 != 0,
                    keep_alive: u16::from(b & 0x0e) * 5,
                    properties,
                    client_id: s(id),
                    will,
                    username: None,
                    password: None,
                    bridge: false,
                };
                handle(&mut r, slot, now, Packet::Connect(Box::new(c)));
            }
            3 => {
                let (Some(a), Some(f), Some(pid)) = (input.byte(), input.pick(FILTERS), input.u16())
                else {
                    break;
                };
                let Some(slot) = &mut slots[i] else { continue };
                let mut o = SubscriptionOptions::new(qos(a));
                o.no_local = a & 0x04 != 0;
                o.retain_as_published = a & 0x08 != 0;
                o.retain_handling = [
                    RetainHandling::SendAtSubscribe,
                    RetainHandling::SendIfNew,
                    RetainHandling::DoNotSend,
                ][usize::from(a >> 4) % 3];
                let p = if a & 0x80 != 0 {
                    Packet::Unsubscribe(Unsubscribe {
                        packet_id: pid.max(1),
                        properties: Properties::default(),
                        filters: vec![s(f)],
                    })
                } else {
                    Packet::Subscribe(Subscribe {
                        packet_id: pid.max(1),
                        properties: Properties::default(),
                        filters: vec![(s(f), o)],
                    })
                };
                handle(&mut r, slot, now, p);
            }
            4 => {
                let (Some(a), Some(t), Some(pid), Some(n)) =
                    (input.byte(), input.pick(TOPICS), input.u16(), input.byte())
                else {
                    break;
                };
                let payload = Bytes::copy_from_slice(input.bytes(usize::from(n % 64)));
                let Some(slot) = &mut slots[i] else { continue };
                let q = qos(a);
                let mut properties = Properties::default();
                if a & 0x10 != 0 {
                    properties.make_mut().topic_alias = Some(u16::from(a >> 6));
                }
                if a & 0x20 != 0 {
                    properties.make_mut().message_expiry_interval = Some(1);
                }
                let p = Publish {
                    dup: a & 0x04 != 0,
                    qos: q,
                    retain: a & 0x08 != 0,
                    topic: if a & 0x30 == 0x30 { ByteStr::new() } else { s(t) },
                    packet_id: if q == QoS::AtMostOnce { 0 } else { pid.max(1) },
                    properties,
                    payload,
                };
                handle(&mut r, slot, now, Packet::Publish(p));
            }
            5 => {
                let (Some(a), Some(pid)) = (input.byte(), input.u16()) else {
                    break;
                };
                let Some(slot) = &mut slots[i] else { continue };
                let mut resp = PubResp::new(pid.max(1));
                if a & 0x80 != 0 {
                    resp.reason = ReasonCode::UNSPECIFIED_ERROR;
                }
                let p = match a % 6 {
                    0 => Packet::PubAck(resp),
                    1 => Packet::PubRec(resp),
                    2 => Packet::PubRel(resp),
                    3 => Packet::PubComp(resp),
                    4 => Packet::PingReq,
                    _ => {
                        let mut d = Disconnect::new(if a & 0x40 != 0 {
                            ReasonCode::DISCONNECT_WITH_WILL
                        } else {
                            ReasonCode::NORMAL_DISCONNECTION
                        });
                        if a & 0x20 != 0 {
                            d.properties.make_mut().session_expiry_interval = Some(3);
                        }
                        Packet::Disconnect(d)
                    }
                };
                handle(&mut r, slot, now, p);
            }
            6 => {
                if let Some(slot) = slots[i].take() {
                    r.connection_lost(now, slot.conn, "reset");
                }
            }
            7 | 8 => {
                let Some(ms) = input.u16() else { break };
                now += Duration::from_millis(u64::from(ms) * 4);
                r.tick(now, 0, 0);
            }
            9 => {
                if op == 0xf9 {
                    r.shutdown(now);
                }
            }
            _ => {}
        }
        drain(&mut r, &mut slots, now);
    }
    drain(&mut r, &mut slots, now);
});

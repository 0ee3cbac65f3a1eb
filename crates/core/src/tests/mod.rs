//! The core driven step by step with simulated time: no sockets, no sleeping.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_codec::{
    ByteStr, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, Will,
};

use crate::connections::{ConnId, Origin};
use crate::message::publish_size;
use crate::router::Router;
use crate::settings::{Limits, Settings};

mod bridge;
mod limits;
mod listeners;
mod seams;

fn origin(port: u16) -> Origin {
    Origin::Network(([127, 0, 0, 1], port).into())
}

struct Sim {
    r: Router,
    now: Instant,
}

fn s(x: &str) -> ByteStr {
    ByteStr::try_from(x).unwrap()
}

fn connect(id: &str, version: ProtocolVersion, keep_alive: u16) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        properties: Properties::default(),
        client_id: s(id),
        will: None,
        username: None,
        password: None,
        bridge: false,
    }
}

fn will(topic: &str, delay: Option<u32>) -> Will {
    Will {
        topic: s(topic),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::from(tinsel_codec::PropertyValues {
            will_delay_interval: delay,
            ..Default::default()
        }),
    }
}

fn msg(topic: &str, qos: QoS, pid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: s(topic),
        packet_id: pid,
        properties: Properties::default(),
        payload: Bytes::from_static(b"m"),
    })
}

impl Sim {
    fn new(f: impl FnOnce(&mut Limits)) -> Sim {
        let mut limits = Limits::default();
        f(&mut limits);
        let now = Instant::now();
        let settings = Settings {
            limits,
            sys_interval: None,
            ..Settings::default()
        };
        Sim {
            r: Router::new(settings, now),
            now,
        }
    }

    fn open(&mut self, c: Connect) -> ConnId {
        let id = self.r.accept(self.now, origin(1883)).0;
        self.r.handle(self.now, id, Packet::Connect(Box::new(c)));
        let out = self.out(id);
        assert!(
            matches!(&out[0], Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS),
            "{out:?}"
        );
        id
    }

    fn subscribe(&mut self, id: ConnId, filter: &str, qos: QoS) {
        self.r.handle(
            self.now,
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![(
                    s(filter),
                    SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    },
                )],
            }),
        );
        assert!(matches!(self.out(id)[..], [Packet::SubAck(_)]));
    }

    /// The connection's output, decoded, and whether it is to close.
    fn take(&mut self, id: ConnId) -> (Vec<Packet>, bool) {
        let c = &self.r.conns.get(id).unwrap();
        let mut taken = c.out.take(None);
        let mut packets = Vec::new();
        while let Some(p) =
            tinsel_codec::decode_packet(&mut taken.bytes, c.version, u32::MAX).unwrap()
        {
            packets.push(p);
        }
        assert!(taken.bytes.is_empty(), "whole packets only");
        (packets, taken.close)
    }

    /// The connection's output, decoded.
    fn out(&mut self, id: ConnId) -> Vec<Packet> {
        self.take(id).0
    }

    fn closed(&mut self, id: ConnId) -> bool {
        self.r.conns.get(id).is_some_and(|c| c.closing)
    }

    fn advance(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
        self.r.tick(self.now, 0, 0);
    }
}

#[test]
fn connect_timeout() {
    let mut sim = Sim::new(|l| l.connect_timeout = 10);
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.advance(9.0);
    assert!(!sim.closed(id));
    sim.advance(1.5);
    assert!(sim.closed(id));
    assert!(sim.take(id).1);
}

#[test]
fn keep_alive_one_and_a_half_times() {
    let mut sim = Sim::new(|_| {});
    let watcher = sim.open(connect("w", ProtocolVersion::V311, 0));
    sim.subscribe(watcher, "will", QoS::AtMostOnce);
    let mut c = connect("ka", ProtocolVersion::V5, 10);
    c.will = Some(will("will", None));
    let id = sim.open(c);
    sim.advance(14.0);
    assert!(!sim.closed(id));
    sim.r.handle(sim.now, id, Packet::PingReq); // activity resets the clock
    assert_eq!(sim.out(id), vec![Packet::PingResp]);
    sim.advance(14.9);
    assert!(!sim.closed(id));
    sim.advance(0.2);
    assert!(sim.closed(id));
    assert!(sim.r.conns.get(id).unwrap().closing);
    let out = sim.out(id);
    assert!(
        matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert!(matches!(&sim.out(watcher)[..], [Packet::Publish(p)] if p.topic == "will"));
}

#[test]
fn server_keep_alive_caps_v5() {
    let mut sim = Sim::new(|l| l.max_keep_alive = 30);
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.r.handle(
        sim.now,
        id,
        Packet::Connect(Box::new(connect("cap", ProtocolVersion::V5, 100))),
    );
    match &sim.out(id)[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.properties.server_keep_alive, Some(30)),
        other => panic!("{other:?}"),
    }
    sim.advance(44.0);
    assert!(!sim.closed(id));
    sim.advance(2.0);
    assert!(sim.closed(id), "enforced at 1.5 x 30 s, not 1.5 x 100 s");
}

#[test]
fn keep_alive_cap_refuses_mqtt3_and_sets_mqtt5_zero() {
    let mut sim = Sim::new(|l| l.max_keep_alive = 30);
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.r.handle(
        sim.now,
        id,
        Packet::Connect(Box::new(connect("v3", ProtocolVersion::V311, 31))),
    );
    assert!(
        matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
    );
    assert!(sim.closed(id));
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.r.handle(
        sim.now,
        id,
        Packet::Connect(Box::new(connect("v5", ProtocolVersion::V5, 0))),
    );
    assert!(
        matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if a.properties.server_keep_alive == Some(30))
    );
}

#[test]
fn will_delay_and_session_expiry() {
    let mut sim = Sim::new(|_| {});
    let watcher = sim.open(connect("w", ProtocolVersion::V311, 0));
    sim.subscribe(watcher, "will", QoS::AtMostOnce);
    let mut c = connect("d", ProtocolVersion::V5, 0);
    c.will = Some(will("will", Some(30)));
    c.properties.make_mut().session_expiry_interval = Some(100);
    let id = sim.open(c);
    sim.r.connection_lost(sim.now, id, "test");
    sim.advance(29.0);
    assert!(sim.out(watcher).is_empty());
    sim.advance(1.5);
    assert_eq!(sim.out(watcher).len(), 1, "will after its delay");

    // The session lives 100 s, then ends.
    sim.advance(60.0);
    assert!(sim.r.sessions.contains("d"));
    sim.advance(40.0);
    assert!(!sim.r.sessions.contains("d"));
}

#[test]
fn shutdown_publishes_every_will_into_persistent_sessions() {
    let mut sim = Sim::new(|_| {});
    let mut w = connect("w", ProtocolVersion::V311, 0);
    w.clean_start = false;
    let watcher = sim.open(w);
    sim.subscribe(watcher, "will/#", QoS::AtLeastOnce);
    // A will waiting for its delay (its client is gone), one with a delay and one without
    // (their clients are connected), and a client that will disconnect normally.
    let qos1 = |topic, delay| Will {
        qos: QoS::AtLeastOnce,
        ..will(topic, delay)
    };
    let mut gone = connect("gone", ProtocolVersion::V5, 0);
    gone.will = Some(qos1("will/gone", Some(60)));
    gone.properties.make_mut().session_expiry_interval = Some(100);
    let id = sim.open(gone);
    sim.r.connection_lost(sim.now, id, "test");
    let mut delayed = connect("delayed", ProtocolVersion::V5, 0);
    delayed.will = Some(qos1("will/delayed", Some(60)));
    delayed.properties.make_mut().session_expiry_interval = Some(100);
    let delayed = sim.open(delayed);
    let mut now = connect("now", ProtocolVersion::V311, 0);
    now.will = Some(qos1("will/now", None));
    let now = sim.open(now);
    let mut polite = connect("polite", ProtocolVersion::V5, 0);
    polite.will = Some(qos1("will/polite", None));
    let polite = sim.open(polite);
    sim.r.handle(
        sim.now,
        polite,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    assert!(sim.out(watcher).is_empty());

    sim.r.shutdown(sim.now);
    let (out, close) = sim.take(delayed);
    assert!(close);
    assert!(
        matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{out:?}"
    );
    assert!(sim.take(now).1);
    // Whether the watcher was closed before or after a will, its session keeps it for the
    // next start: queued, or in flight (resent with DUP when it resumes).
    let session = sim.r.sessions.get("w").unwrap();
    let inflight = session.inflight.values().filter_map(|i| match i {
        crate::session::Inflight::Publish { publish, .. } => Some(publish),
        crate::session::Inflight::Release => None,
    });
    let mut topics: Vec<String> = session
        .queue
        .iter()
        .map(|q| &q.publish)
        .chain(inflight)
        .map(|p| p.topic.to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["will/delayed", "will/gone", "will/now"]);
}

#[test]
fn reconnecting_moves_the_session_expiry() {
    let mut sim = Sim::new(|_| {});
    let mut c = connect("r", ProtocolVersion::V5, 0);
    c.clean_start = false;
    c.properties.make_mut().session_expiry_interval = Some(10);
    let id = sim.open(c.clone());
    sim.r.connection_lost(sim.now, id, "test");
    assert_eq!(sim.r.sessions.timers_len(), 1);
    sim.advance(5.0);
    let id = sim.open(c);
    assert!((sim.r.sessions.timers_len() == 0), "connected: no expiry");
    sim.advance(3.0);
    sim.r.connection_lost(sim.now, id, "test");
    // The first disconnection's deadline (10 s) passes: the session stays.
    sim.advance(2.5);
    assert!(sim.r.sessions.contains("r"));
    sim.advance(7.0);
    assert!(sim.r.sessions.contains("r"));
    // 10 s after the second one, it ends.
    sim.advance(1.0);
    assert!(!sim.r.sessions.contains("r"));
    assert!((sim.r.sessions.timers_len() == 0));
}

#[test]
fn timers_hold_one_entry_per_watched_connection() {
    let mut sim = Sim::new(|l| l.connect_timeout = 10);
    let mut ids = Vec::new();
    for i in 0..100 {
        // Keep alive 2 s: due (3 s) before the CONNECT timeout, so a timer of its own.
        ids.push(sim.open(connect(&format!("c{i}"), ProtocolVersion::V311, 2)));
    }
    assert_eq!(sim.r.timers.len(), 100);
    assert_eq!(sim.r.timers.connect_len(), 100);
    for _ in 0..10 {
        for &id in &ids {
            sim.r.handle(sim.now, id, Packet::PingReq);
        }
        sim.advance(1.0);
        // Each connection's entry moves; none is added.
        assert_eq!(sim.r.timers.len(), 100);
        assert!(ids.iter().all(|&id| !sim.closed(id)));
    }
    sim.advance(0.5);
    assert!(
        (sim.r.timers.connect_len() == 0),
        "CONNECT deadlines passed"
    );
    for &id in &ids {
        sim.r.connection_lost(sim.now, id, "test");
    }
    assert!((sim.r.timers.len() == 0));
}

#[test]
fn session_expiry_drops_queue_and_subscriptions() {
    let mut sim = Sim::new(|_| {});
    let mut c = connect("q", ProtocolVersion::V5, 0);
    c.clean_start = false;
    c.properties.make_mut().session_expiry_interval = Some(60);
    let id = sim.open(c.clone());
    sim.subscribe(id, "t", QoS::AtLeastOnce);
    sim.r
        .handle(sim.now, id, Packet::Disconnect(Disconnect::default()));
    sim.r.connection_lost(sim.now, id, "test");
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, 1));
    assert_eq!(sim.r.sessions.get("q").unwrap().queue.len(), 1);
    assert_eq!(sim.r.subs.len(), 1);
    sim.advance(61.0);
    assert!(!sim.r.sessions.contains("q"));
    assert_eq!(
        sim.r.subs.len(),
        0,
        "subscriptions removed with the session"
    );
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    assert!(matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if !a.session_present));
}

#[test]
fn qos0_backlog_is_bounded() {
    let mut sim = Sim::new(|l| l.max_queued_messages = 3);
    let sub = sim.open(connect("s", ProtocolVersion::V311, 0));
    sim.subscribe(sub, "t", QoS::AtMostOnce);
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    for _ in 0..10 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    }
    assert_eq!(
        sim.out(sub).len(),
        3,
        "the connection is not reading: QoS 0 dropped"
    );
    assert_eq!(sim.r.sys.stats.messages_dropped(), 7);
    let slow = crate::DropCause::SlowSubscriber as usize;
    assert_eq!(sim.r.sys.stats.dropped[slow], 7);
    sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    assert_eq!(
        sim.out(sub).len(),
        1,
        "room again once the backlog is taken"
    );
}

#[test]
fn packet_ids_and_outgoing_qos2_flow() {
    let mut sim = Sim::new(|_| {});
    let sub = sim.open(connect("s", ProtocolVersion::V5, 0));
    sim.subscribe(sub, "t", QoS::ExactlyOnce);
    let p = sim.open(connect("p", ProtocolVersion::V5, 0));
    sim.r.handle(sim.now, p, msg("t", QoS::ExactlyOnce, 9));
    let pid = match &sim.out(sub)[..] {
        [Packet::Publish(m)] => m.packet_id,
        other => panic!("{other:?}"),
    };
    sim.r
        .handle(sim.now, sub, Packet::PubRec(PubResp::new(pid)));
    assert_eq!(sim.out(sub), vec![Packet::PubRel(PubResp::new(pid))]);
    sim.r
        .handle(sim.now, sub, Packet::PubComp(PubResp::new(pid)));
    assert!(sim.r.sessions.get("s").unwrap().inflight.is_empty());
}

#[test]
fn fan_out_gives_each_subscriber_its_packet_id() {
    let mut sim = Sim::new(|_| {});
    let subs: Vec<ConnId> = (0..3)
        .map(|i| {
            let id = sim.open(connect(&format!("s{i}"), ProtocolVersion::V311, 0));
            sim.subscribe(id, "fan/#", QoS::AtLeastOnce);
            id
        })
        .collect();
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    sim.r
        .handle(sim.now, p, msg("fan/out", QoS::AtLeastOnce, 1));
    for id in subs {
        match &sim.out(id)[..] {
            [Packet::Publish(m)] => {
                assert_eq!((m.topic.as_str(), &m.payload[..]), ("fan/out", &b"m"[..]));
                assert_eq!(m.qos, QoS::AtLeastOnce);
                assert_ne!(m.packet_id, 0);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn many_overlapping_subscribers_merge() {
    let mut sim = Sim::new(|_| {});
    let subs: Vec<ConnId> = (0..40)
        .map(|i| {
            let id = sim.open(connect(&format!("s{i}"), ProtocolVersion::V311, 0));
            sim.subscribe(id, "m/#", QoS::AtMostOnce);
            sim.subscribe(id, "m/+", QoS::AtLeastOnce);
            id
        })
        .collect();
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    sim.r.handle(sim.now, p, msg("m/x", QoS::AtLeastOnce, 1));
    for id in subs {
        let out = sim.out(id);
        assert!(
            matches!(&out[..], [Packet::Publish(m)] if m.qos == QoS::AtLeastOnce),
            "{out:?}"
        );
    }
}

#[test]
fn slow_subscriber_makes_publishers_wait_stalled_one_does_not() {
    let mut sim = Sim::new(|l| l.max_queued_messages = 10);
    let mut c = connect("slow", ProtocolVersion::V5, 0);
    c.properties.make_mut().receive_maximum = Some(1);
    let sub = sim.open(c);
    sim.subscribe(sub, "t", QoS::AtLeastOnce);
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    for pid in 1..=5 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, pid));
    }
    assert!(
        !sim.r.take_pressure(),
        "1 in flight + 4 queued: below the high-water mark"
    );
    sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, 6));
    assert!(sim.r.take_pressure());
    assert!(!sim.r.take_pressure(), "reported once");
    assert!(sim.r.congested(sim.now));
    // The subscriber keeps acknowledging: the queue shrinks below half the mark.
    for _ in 0..3 {
        let pid = match &sim.out(sub)[..] {
            [Packet::Publish(m)] => m.packet_id,
            other => panic!("{other:?}"),
        };
        sim.r
            .handle(sim.now, sub, Packet::PubAck(PubResp::new(pid)));
    }
    assert!(!sim.r.congested(sim.now));

    // Congested again, then stalled: it stops holding publishers back.
    for pid in 7..=12 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, pid));
    }
    assert!(sim.r.take_pressure());
    assert!(sim.r.congested(sim.now));
    sim.advance(0.6);
    assert!(!sim.r.congested(sim.now));
}

#[test]
fn slow_qos0_subscriber_makes_publishers_wait_stalled_one_does_not() {
    let mut sim = Sim::new(|l| l.max_queued_messages = 10);
    let sub = sim.open(connect("slow", ProtocolVersion::V311, 0));
    sim.subscribe(sub, "t", QoS::AtMostOnce);
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    for _ in 0..4 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    }
    assert!(
        !sim.r.take_pressure(),
        "4 waiting: below the high-water mark"
    );
    sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    assert!(
        sim.r.take_pressure(),
        "5 waiting: the publisher should wait"
    );
    assert!(sim.r.congested(sim.now));
    // The connection takes its packets: the publisher may go on, nothing was lost.
    assert_eq!(sim.out(sub).len(), 5);
    assert!(!sim.r.congested(sim.now));
    assert_eq!(sim.r.sys.stats.messages_dropped(), 0);

    // Congested again, then the connection takes nothing for half a second (its client
    // does not read): it stops holding publishers back and loses the excess instead.
    for _ in 0..5 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    }
    assert!(sim.r.take_pressure());
    assert!(sim.r.congested(sim.now));
    sim.advance(0.6);
    assert!(!sim.r.congested(sim.now));
    for _ in 0..10 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    }
    assert!(!sim.r.take_pressure(), "a stalled subscriber never pauses");
    assert_eq!(sim.r.sys.stats.messages_dropped(), 5);
    assert_eq!(sim.out(sub).len(), 10);
    // Taking its packets makes it count again.
    for _ in 0..5 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
    }
    assert!(sim.r.take_pressure());
}

#[test]
fn a_client_never_waits_for_itself() {
    let mut sim = Sim::new(|l| l.max_queued_messages = 4);
    let mut c = connect("loop", ProtocolVersion::V5, 0);
    c.properties.make_mut().receive_maximum = Some(1);
    let me = sim.open(c);
    sim.subscribe(me, "t", QoS::AtLeastOnce);
    for pid in 1..=6 {
        sim.r.handle(sim.now, me, msg("t", QoS::AtLeastOnce, pid));
    }
    assert!(!sim.r.take_pressure());
}

#[test]
fn retained_messages_expire_once_each() {
    let mut sim = Sim::new(|_| {});
    let publ = sim.open(connect("p", ProtocolVersion::V5, 0));
    let retained = |expiry: Option<u32>| {
        let Packet::Publish(mut p) = msg("r/t", QoS::AtMostOnce, 0) else {
            unreachable!()
        };
        p.retain = true;
        p.properties.make_mut().message_expiry_interval = expiry;
        Packet::Publish(p)
    };
    // Republished with an expiry: one entry, the newest (also within one instant).
    sim.r.handle(sim.now, publ, retained(Some(10)));
    sim.r.handle(sim.now, publ, retained(Some(10)));
    assert_eq!(sim.r.retained.timers_len(), 1);
    sim.advance(2.0);
    sim.r.handle(sim.now, publ, retained(Some(10)));
    assert_eq!(sim.r.retained.timers_len(), 1);
    sim.advance(9.0);
    assert_eq!(
        sim.r.retained.len(),
        1,
        "the first one's deadline passed, not this one's"
    );
    sim.advance(1.5);
    assert!((sim.r.retained.len() == 0));
    assert!((sim.r.retained.timers_len() == 0));
    // Replaced by one without expiry: stays.
    sim.r.handle(sim.now, publ, retained(Some(5)));
    sim.r.handle(sim.now, publ, retained(None));
    assert!((sim.r.retained.timers_len() == 0));
    sim.advance(6.0);
    assert_eq!(sim.r.retained.len(), 1);
}

#[test]
fn publish_size_matches_the_encoder() {
    let mut p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: s("a/b/c"),
        packet_id: 5,
        properties: Properties::default(),
        payload: Bytes::from(vec![7u8; 300]),
    };
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let want = Packet::Publish(p.clone()).encoded_len(v).unwrap();
        assert_eq!(publish_size(&p, v), want);
    }
    p.properties = Properties::from(tinsel_codec::PropertyValues {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(10),
        content_type: Some(s("text/plain")),
        response_topic: Some(s("r/t")),
        correlation_data: Some(Bytes::from_static(b"xyz")),
        subscription_identifiers: vec![1, 300, 70_000],
        topic_alias: Some(3),
        user_properties: vec![(s("k"), s("v")), (s("key2"), s("value2"))],
        ..Default::default()
    });
    let want = Packet::Publish(p.clone())
        .encoded_len(ProtocolVersion::V5)
        .unwrap();
    assert_eq!(publish_size(&p, ProtocolVersion::V5), want);
}

#[test]
fn connected_count_follows_connections_without_a_scan() {
    let mut sim = Sim::new(|_| {});
    let a = sim.open(connect("a", ProtocolVersion::V311, 0));
    let _b = sim.open(connect("b", ProtocolVersion::V311, 0));
    // Accepted but no CONNECT yet: not connected.
    let waiting = sim.r.accept(sim.now, origin(1884)).0;
    assert_eq!(sim.r.conns.connected_count(), 2);
    // A session taken over: the old connection counts until it is gone.
    let a2 = sim.open(connect("a", ProtocolVersion::V311, 0));
    sim.r.connection_lost(sim.now, a, "taken over");
    assert_eq!(sim.r.conns.connected_count(), 2);
    sim.r.connection_lost(sim.now, a2, "gone");
    sim.r.connection_lost(sim.now, waiting, "gone");
    assert_eq!(sim.r.conns.connected_count(), 1);
    // Refused: never counted.
    let mut bad = connect("", ProtocolVersion::V31, 0);
    bad.clean_start = false;
    let refused = sim.r.accept(sim.now, origin(1885)).0;
    sim.r
        .handle(sim.now, refused, Packet::Connect(Box::new(bad)));
    assert_eq!(sim.r.conns.connected_count(), 1);
    sim.r.connection_lost(sim.now, refused, "refused");
    assert_eq!(sim.r.conns.connected_count(), 1);
    // The same figure the scan of sessions gave.
    let scanned = sim.r.sessions.online_count();
    assert_eq!(sim.r.conns.connected_count(), scanned);
}

#[test]
fn counters_by_qos_and_cause_latency_refusals_and_busiest_topics() {
    use crate::DropCause;
    let mut sim = Sim::new(|l| l.max_queued_messages = 2);
    // An offline persistent session with room for two messages.
    let mut c = connect("away", ProtocolVersion::V311, 0);
    c.clean_start = false;
    let away = sim.open(c.clone());
    sim.subscribe(away, "t", QoS::AtLeastOnce);
    sim.r.connection_lost(sim.now, away, "test");
    // A subscriber that accepts packets of at most 20 bytes.
    let mut small = connect("small", ProtocolVersion::V5, 0);
    small.properties.make_mut().maximum_packet_size = Some(20);
    let small = sim.open(small);
    sim.subscribe(small, "big", QoS::AtMostOnce);

    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    for pid in 1..=3 {
        sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, pid));
    }
    let Packet::Publish(mut big) = msg("big", QoS::AtMostOnce, 0) else {
        unreachable!()
    };
    big.payload = Bytes::from(vec![b'x'; 100]);
    sim.r.handle(sim.now, p, Packet::Publish(big));
    let st = sim.r.sys.stats;
    assert_eq!(st.received, [1, 3, 0]);
    assert_eq!(st.received_payload, [100, 3, 0]);
    assert_eq!(st.dropped[DropCause::QueueFull as usize], 1);
    assert_eq!(st.dropped[DropCause::TooLarge as usize], 1);
    assert_eq!(st.delivery_latency.count(), 0);
    let q = sim.r.queue_depths(5);
    assert_eq!((q.queued, q.queued_max, q.inflight), (2, 2, 0));
    assert_eq!(&*q.deepest[0].client_id, "away");

    // Back two seconds later: both queued messages leave, each having waited 2 s.
    sim.advance(2.0);
    sim.open(c); // its CONNACK and the two messages, checked by the counters
    let st = sim.r.sys.stats;
    assert_eq!(st.sent, [0, 2, 0]);
    assert_eq!(st.sent_payload, [0, 2, 0]);
    let h = st.delivery_latency;
    assert_eq!(h.count(), 2);
    let le = |bound: f64| {
        let i = crate::BUCKET_BOUNDS
            .iter()
            .position(|&b| b == bound)
            .unwrap();
        h.cumulative()[i]
    };
    assert_eq!((le(1.0), le(2.5)), (0, 2));
    assert!((h.sum_seconds() - 4.0).abs() < 1e-6);
    assert_eq!(sim.r.queue_depths(5).queued, 0);

    // Refused: MQTT 3.1 without a client id.
    let id = sim.r.accept(sim.now, origin(1883)).0;
    sim.r.handle(
        sim.now,
        id,
        Packet::Connect(Box::new(connect("", ProtocolVersion::V31, 0))),
    );
    assert_eq!(
        sim.r.refusals(),
        [(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 1)]
    );
    let top = sim.r.top_topics(5);
    let top: Vec<_> = top.iter().map(|t| (t.topic.as_str(), t.count)).collect();
    assert_eq!(top, [("t", 3), ("big", 1)]);
}

//! The seams driven step by step: access (authenticator, authorizer), durability (records
//! and held acknowledgements) and links.

use std::sync::Arc;

use tinsel_codec::{ByteStr, Packet, Properties, ProtocolVersion, QoS, ReasonCode};

use super::{Sim, connect, msg, origin, s, will};
use crate::access::{AuthDecision, Authenticator, Authorizer, ConnectInfo, Identity, Verdict};
use crate::connections::MAX_EARLY;
use crate::connections::Origin;
use crate::durable::Record;

/// Lets in user `alice` with password `secret` (deciding slowly for `slow`); anonymous
/// clients are refused.
struct Passwords;

impl Authenticator for Passwords {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        match info.username.as_deref() {
            Some("slow") => AuthDecision::Defer,
            Some("alice") if info.password.as_deref() == Some(b"secret") => {
                AuthDecision::Allow(Some(Arc::from("alice")))
            }
            _ => AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        }
    }
}

/// `alice` may read and write `home/alice/#`; everybody may read `public/#`; nobody may
/// write `public/#` but alice; wills only to `wills/#`.
struct Rules;

impl Authorizer for Rules {
    fn publish(&self, who: Identity<'_>, topic: &str) -> bool {
        who.username == Some("alice")
            && (topic.starts_with("home/alice/") || topic.starts_with("public/"))
            || topic.starts_with("wills/")
    }

    fn subscribe(&self, who: Identity<'_>, filter: &str) -> Verdict {
        let readable = filter.starts_with("public/")
            || filter == "#"
            || who.username == Some("alice") && filter.starts_with("home/alice/");
        if readable {
            Verdict::Grant
        } else {
            Verdict::Refuse
        }
    }

    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool {
        topic.starts_with("public/")
            || topic.starts_with("wills/")
            || who.username == Some("alice") && topic.starts_with("home/alice/")
    }
}

fn with_user(
    id: &str,
    version: ProtocolVersion,
    user: &str,
    password: &str,
) -> tinsel_codec::Connect {
    let mut c = connect(id, version, 0);
    c.username = Some(s(user));
    c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    c
}

fn connack_reason(p: &[Packet]) -> Option<ReasonCode> {
    match p.first() {
        Some(Packet::ConnAck(a)) => Some(a.reason),
        _ => None,
    }
}

#[test]
fn a_refused_connect_gets_its_reason_and_closes() {
    let mut sim = Sim::new(|_| {});
    sim.r.set_authenticator(Arc::new(Passwords));
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = sim.r.accept(sim.now, origin(1)).0;
        let c = with_user("c", version, "alice", "wrong");
        sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
        let (out, close) = sim.take(id);
        assert_eq!(
            connack_reason(&out),
            Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert!(close);
        assert!(
            !sim.r.sessions.contains("c"),
            "no session for a refused client"
        );
    }
    let ok = sim.open(with_user("c", ProtocolVersion::V5, "alice", "secret"));
    assert_eq!(
        sim.r.conns.get(ok).unwrap().username.as_deref(),
        Some("alice")
    );
}

#[test]
fn a_deferred_connect_waits_with_its_early_packets() {
    let mut sim = Sim::new(|_| {});
    sim.r.set_authenticator(Arc::new(Passwords));
    let id = sim.r.accept(sim.now, origin(1)).0;
    let c = with_user("d", ProtocolVersion::V5, "slow", "x");
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    sim.r
        .handle(sim.now, id, msg("public/x", QoS::AtLeastOnce, 7));
    assert!(sim.out(id).is_empty(), "nothing before the decision");
    let work = sim.r.take_work();
    assert_eq!(work.authenticate.len(), 1);
    assert_eq!(work.authenticate[0].0, id);
    assert_eq!(work.authenticate[0].1.client_id.as_ref(), "d");
    assert!(!sim.r.has_work());

    sim.r.authenticated(sim.now, id, AuthDecision::Allow(None));
    let out = sim.out(id);
    assert_eq!(connack_reason(&out), Some(ReasonCode::SUCCESS));
    // The PUBLISH sent before the CONNACK is handled after it.
    assert!(
        matches!(&out[1..], [Packet::PubAck(a)] if a.packet_id == 7),
        "{out:?}"
    );

    // Refused after deferring: CONNACK with the reason, closed, no session.
    let id = sim.r.accept(sim.now, origin(2)).0;
    let c = with_user("e", ProtocolVersion::V311, "slow", "x");
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    sim.r.take_work();
    sim.r
        .authenticated(sim.now, id, AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED));
    let (out, close) = sim.take(id);
    assert_eq!(connack_reason(&out), Some(ReasonCode::NOT_AUTHORIZED));
    assert!(close);
    assert!(!sim.r.sessions.contains("e"));
}

#[test]
fn too_many_early_packets_close_the_connection() {
    let mut sim = Sim::new(|_| {});
    sim.r.set_authenticator(Arc::new(Passwords));
    let id = sim.r.accept(sim.now, origin(1)).0;
    let c = with_user("d", ProtocolVersion::V5, "slow", "x");
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    for _ in 0..MAX_EARLY {
        sim.r.handle(sim.now, id, Packet::PingReq);
    }
    assert!(!sim.closed(id));
    sim.r.handle(sim.now, id, Packet::PingReq);
    assert!(sim.closed(id));
    // The answer that comes later finds it closed: nothing happens.
    sim.r.take_work();
    sim.r.authenticated(sim.now, id, AuthDecision::Allow(None));
    assert!(!sim.r.sessions.contains("d"));
}

#[test]
fn the_authorizer_decides_publish_subscribe_delivery_and_retained() {
    let mut sim = Sim::new(|_| {});
    sim.r.set_authorizer(Arc::new(Rules));
    let mut alice = with_user("alice-1", ProtocolVersion::V5, "alice", "");
    alice.clean_start = true;
    let alice = sim.open(alice);
    let bob = sim.open(connect("bob", ProtocolVersion::V5, 0));
    let old = sim.open(connect("old", ProtocolVersion::V311, 0));

    // A retained message bob may not read, published before he subscribes to `#`.
    let mut secret = msg("home/alice/door", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut secret {
        p.retain = true;
    }
    sim.r.handle(sim.now, alice, secret);
    let mut news = msg("public/news", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut news {
        p.retain = true;
    }
    sim.r.handle(sim.now, alice, news);

    // Refused filters: 0x87 in MQTT 5, 0x80 before.
    sim.r.handle(sim.now, bob, sub("home/alice/#", 1));
    assert!(
        matches!(&sim.out(bob)[..], [Packet::SubAck(a)] if a.reasons == [ReasonCode::NOT_AUTHORIZED])
    );
    sim.r.handle(sim.now, old, sub("home/alice/#", 1));
    assert!(
        matches!(&sim.out(old)[..], [Packet::SubAck(a)] if a.reasons == [ReasonCode::UNSPECIFIED_ERROR])
    );

    // A wide filter is granted; only what bob may read arrives, retained included.
    sim.r.handle(sim.now, bob, sub("#", 0));
    let out = sim.out(bob);
    let topics: Vec<&str> = out
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["public/news"], "{out:?}");
    sim.r
        .handle(sim.now, alice, msg("home/alice/light", QoS::AtMostOnce, 0));
    assert!(sim.out(bob).is_empty(), "bob may not read home/alice/light");

    // A refused PUBLISH: 0x87 in MQTT 5, routed nowhere.
    sim.r
        .handle(sim.now, bob, msg("public/news", QoS::AtLeastOnce, 3));
    assert!(
        matches!(&sim.out(bob)[..], [Packet::PubAck(a)] if a.reason == ReasonCode::NOT_AUTHORIZED)
    );
    sim.r
        .handle(sim.now, old, msg("public/news", QoS::AtLeastOnce, 4));
    assert!(matches!(&sim.out(old)[..], [Packet::PubAck(a)] if a.reason == ReasonCode::SUCCESS));
    assert!(sim.out(alice).is_empty());
}

#[test]
fn wills_are_checked_when_they_are_sent() {
    let mut sim = Sim::new(|_| {});
    sim.r.set_authorizer(Arc::new(Rules));
    let watcher = sim.open(connect("w", ProtocolVersion::V5, 0));
    sim.subscribe(watcher, "#", QoS::AtMostOnce);
    for (id, topic, sent) in [("a", "wills/a", true), ("b", "public/b", false)] {
        let mut c = connect(id, ProtocolVersion::V5, 0);
        c.will = Some(will(topic, None));
        let conn = sim.open(c);
        sim.r.connection_lost(sim.now, conn, "gone");
        let out = sim.out(watcher);
        assert_eq!(
            out.iter().any(|p| matches!(p, Packet::Publish(_))),
            sent,
            "{topic}: {out:?}"
        );
    }
}

fn sub(filter: &str, qos: u8) -> Packet {
    Packet::Subscribe(tinsel_codec::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(
            s(filter),
            tinsel_codec::SubscriptionOptions {
                qos: QoS::from_u8(qos).unwrap(),
                ..Default::default()
            },
        )],
    })
}

fn durable_sim() -> Sim {
    let mut sim = Sim::new(|_| {});
    sim.r.settings.durable_acks = true;
    sim.r.durable = crate::durable::Durability::new(true);
    sim
}

fn persistent(id: &str) -> tinsel_codec::Connect {
    let mut c = connect(id, ProtocolVersion::V311, 0);
    c.clean_start = false;
    c
}

#[test]
fn acknowledgements_wait_for_the_store() {
    let mut sim = durable_sim();
    // A new persistent session: its CONNACK waits for its record.
    let sub_id = sim.r.accept(sim.now, origin(1)).0;
    sim.r
        .handle(sim.now, sub_id, Packet::Connect(Box::new(persistent("s"))));
    assert!(sim.out(sub_id).is_empty(), "CONNACK held");
    let work = sim.r.take_work();
    assert_eq!(
        work.records,
        [Record::SessionOpened {
            client: Arc::from("s"),
            expiry: u32::MAX
        }]
    );
    sim.r.durable(work.ticket);
    assert_eq!(connack_reason(&sim.out(sub_id)), Some(ReasonCode::SUCCESS));

    sim.r.handle(sim.now, sub_id, sub("t/#", 1));
    assert!(sim.out(sub_id).is_empty(), "SUBACK held");
    let work = sim.r.take_work();
    assert!(matches!(&work.records[..], [Record::Subscribed { filter, .. }] if &**filter == "t/#"));
    sim.r.durable(work.ticket);
    assert!(matches!(&sim.out(sub_id)[..], [Packet::SubAck(_)]));

    // A clean publisher: its QoS 1 message goes to a persistent session, so its PUBACK
    // waits; the subscriber gets the message at once.
    let publisher = sim.open(connect("p", ProtocolVersion::V311, 0));
    assert!(!sim.r.has_work(), "a clean session makes no record");
    sim.r
        .handle(sim.now, publisher, msg("t/1", QoS::AtLeastOnce, 1));
    sim.r.handle(sim.now, publisher, Packet::PingReq);
    sim.r.handle(
        sim.now,
        publisher,
        msg("nobody/listens", QoS::AtLeastOnce, 2),
    );
    let out = sim.out(publisher);
    assert!(
        matches!(&out[..], [Packet::PingResp]),
        "PUBACKs held: {out:?}"
    );
    assert!(matches!(&sim.out(sub_id)[..], [Packet::Publish(p)] if p.topic.as_str() == "t/1"));
    let work = sim.r.take_work();
    assert!(
        matches!(&work.records[..], [Record::Sent { .. }, Record::Accepted { sessions, .. }] if sessions.len() == 1 && &*sessions[0] == "s"),
        "{:?}",
        work.records
    );
    // Released in order: the second PUBACK (no record of its own) waited behind the first.
    sim.r.durable(work.ticket - 1);
    assert!(sim.out(publisher).is_empty());
    sim.r.durable(work.ticket);
    let out = sim.out(publisher);
    let ids: Vec<u16> = out
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn a_client_that_does_not_wait_for_held_acknowledgements_is_closed() {
    let mut sim = durable_sim();
    sim.r.settings.limits.max_inflight = 3;
    let s_conn = sim.r.accept(sim.now, origin(1)).0;
    sim.r
        .handle(sim.now, s_conn, Packet::Connect(Box::new(persistent("s"))));
    sim.r.handle(sim.now, s_conn, sub("t", 1));
    let ticket = sim.r.take_work().ticket;
    sim.r.durable(ticket);
    let publisher = sim.open(connect("p", ProtocolVersion::V5, 0));
    for pid in 1..=3 {
        sim.r
            .handle(sim.now, publisher, msg("t", QoS::AtLeastOnce, pid));
    }
    assert!(!sim.closed(publisher));
    sim.r
        .handle(sim.now, publisher, msg("t", QoS::AtLeastOnce, 4));
    let (out, close) = sim.take(publisher);
    assert!(close);
    assert!(
        matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{out:?}"
    );
}

/// Connects `id` (its CONNACK held, then released) and returns the records it made.
fn open_durable(sim: &mut Sim, c: tinsel_codec::Connect) -> (crate::ConnId, Vec<Record>) {
    let id = sim.r.accept(sim.now, origin(1)).0;
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    assert!(sim.out(id).is_empty(), "CONNACK held");
    let work = sim.r.take_work();
    sim.r.durable(work.ticket);
    assert_eq!(connack_reason(&sim.out(id)), Some(ReasonCode::SUCCESS));
    (id, work.records)
}

/// The will records in `r`: set and pending with their topic, taken with its client.
fn will_of(r: &[Record]) -> Vec<(&str, &str)> {
    r.iter()
        .filter_map(|r| match r {
            Record::WillSet { will, .. } => Some(("set", &*will.topic)),
            Record::WillPending { will, .. } => Some(("pending", &*will.topic)),
            Record::WillTaken { client } => Some(("taken", &**client)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_will_of_a_connected_client_is_recorded_until_it_is_sent_or_discarded() {
    let mut sim = durable_sim();
    let watcher = sim.open(connect("watcher", ProtocolVersion::V5, 0));
    sim.subscribe(watcher, "wills/#", QoS::AtMostOnce);
    let with_will = |id: &str, delay: Option<u32>, expiry: u32| {
        let mut c = connect(id, ProtocolVersion::V5, 0);
        c.will = Some(will(&format!("wills/{id}"), delay));
        c.properties.make_mut().session_expiry_interval = Some(expiry);
        c
    };
    // A clean client: its CONNACK waits for the record of its will.
    let (a, records) = open_durable(&mut sim, with_will("a", None, 0));
    assert_eq!(will_of(&records), [("set", "wills/a")]);
    // A normal DISCONNECT discards it: the store forgets it.
    sim.r.handle(
        sim.now,
        a,
        Packet::Disconnect(tinsel_codec::Disconnect::default()),
    );
    assert_eq!(will_of(&sim.r.take_work().records), [("taken", "a")]);
    // A connection lost: published at once, and forgotten.
    let (b, _) = open_durable(&mut sim, with_will("b", None, 0));
    sim.r.connection_lost(sim.now, b, "gone");
    assert_eq!(will_of(&sim.r.take_work().records), [("taken", "b")]);
    assert_eq!(sim.out(watcher).len(), 1, "b's will");
    // With a delay and a session that lives on: it waits, as a pending will.
    let (c, records) = open_durable(&mut sim, with_will("c", Some(30), 60));
    assert_eq!(will_of(&records), [("set", "wills/c")]);
    sim.r.connection_lost(sim.now, c, "gone");
    assert_eq!(
        will_of(&sim.r.take_work().records),
        [("pending", "wills/c")]
    );
    // The session resumes: its CONNACK is not held; the pending will is dropped and the new
    // connection's will is recorded.
    let id = sim.r.accept(sim.now, origin(1)).0;
    let mut again = with_will("c", Some(30), 60);
    again.clean_start = false;
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(again)));
    assert_eq!(connack_reason(&sim.out(id)), Some(ReasonCode::SUCCESS));
    let records = sim.r.take_work().records;
    assert_eq!(will_of(&records), [("taken", "c"), ("set", "wills/c")]);
    assert!(sim.out(watcher).is_empty());
}

#[test]
fn wills_of_clients_connected_when_the_broker_died_are_sent_after_the_restart() {
    use crate::restore::{Restored, RestoredSession, RestoredWill};
    let mut sim = Sim::new(|_| {});
    let mut restored = Restored::new(
        vec![
            RestoredSession::new(Arc::from("kept"), 300),
            RestoredSession::new(Arc::from("back"), 300),
        ],
        Vec::new(),
    );
    let w = |topic: &str, delay: u32| {
        RestoredWill::new(None, Box::new(will(topic, Some(delay))), delay)
    };
    restored.wills = vec![
        // No session: the delay is capped by an expiry of 0, it goes at the first tick.
        (Arc::from("clean"), w("wills/clean", 60)),
        // A session that lives on: after the delay, from the restart.
        (Arc::from("kept"), w("wills/kept", 10)),
        // Its client comes back within the delay: the will is dropped.
        (Arc::from("back"), w("wills/back", 10)),
    ];
    sim.r.restore(sim.now, restored);
    let watcher = sim.open(connect("watcher", ProtocolVersion::V5, 0));
    sim.subscribe(watcher, "wills/#", QoS::AtMostOnce);
    let topics = |sim: &mut Sim| -> Vec<String> {
        sim.out(watcher)
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.topic.to_string()),
                _ => None,
            })
            .collect()
    };
    sim.advance(0.5);
    assert_eq!(topics(&mut sim), ["wills/clean"]);
    let mut back = connect("back", ProtocolVersion::V5, 0);
    back.clean_start = false;
    back.properties.make_mut().session_expiry_interval = Some(300);
    sim.open(back);
    sim.advance(5.0);
    assert!(topics(&mut sim).is_empty());
    sim.advance(5.0);
    assert_eq!(topics(&mut sim), ["wills/kept"]);
    sim.advance(20.0);
    assert!(topics(&mut sim).is_empty(), "each will once");
}

#[test]
fn without_a_store_nothing_is_recorded_or_held() {
    let mut sim = Sim::new(|_| {});
    let id = sim.r.accept(sim.now, origin(1)).0;
    let mut c = persistent("s");
    c.will = Some(will("wills/s", None));
    sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
    sim.r.handle(sim.now, id, sub("t", 1));
    sim.r.handle(sim.now, id, msg("t", QoS::ExactlyOnce, 5));
    assert!(!sim.r.has_work());
    let out = sim.out(id);
    assert!(matches!(&out[0], Packet::ConnAck(_)));
    assert!(
        out.iter()
            .any(|p| matches!(p, Packet::PubRec(r) if r.packet_id == 5))
    );
}

#[test]
fn a_link_gets_messages_through_the_same_path() {
    let mut sim = Sim::new(|_| {});
    let (link, outbox) = sim.r.accept(sim.now, Origin::Link(Arc::from("bridge-1")));
    sim.r.handle(
        sim.now,
        link,
        Packet::Connect(Box::new(persistent("$bridge/1"))),
    );
    sim.r.handle(sim.now, link, sub("sensors/#", 1));
    let device = sim.open(connect("d", ProtocolVersion::V5, 0));
    sim.r
        .handle(sim.now, device, msg("sensors/t", QoS::AtLeastOnce, 9));
    let mut woken = Vec::new();
    sim.r.wake(None, |id, _| woken.push(id));
    assert!(woken.is_empty(), "a link is never parked");
    let mut taken = outbox.take(None);
    let mut topics = Vec::new();
    while let Some(p) =
        tinsel_codec::decode_packet(&mut taken.bytes, ProtocolVersion::V311, u32::MAX).unwrap()
    {
        if let Packet::Publish(p) = p {
            topics.push((p.topic, p.qos));
        }
    }
    let want: ByteStr = s("sensors/t");
    assert_eq!(topics, [(want, QoS::AtLeastOnce)]);
}

/// Lets in whoever its certificate names, and records what it was shown.
struct Certificates(std::sync::Mutex<Vec<(Option<String>, Option<String>)>>);

impl Authenticator for Certificates {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        let user = info.username.as_deref().map(str::to_owned);
        let cert = info.tls_identity.as_deref().map(str::to_owned);
        self.0.lock().unwrap().push((user, cert));
        AuthDecision::Allow(info.username.as_deref().map(Arc::from))
    }
}

#[test]
fn a_certificate_identity_reaches_the_authenticator_and_may_replace_the_user_name() {
    let auth = Arc::new(Certificates(Default::default()));
    let mut sim = Sim::new(|_| {});
    sim.r.set_authenticator(auth.clone());
    for (n, as_username) in [(1, false), (2, true)] {
        let id = sim.r.accept(sim.now, origin(n)).0;
        sim.r
            .set_tls_identity(id, Arc::from("CN=dev1"), as_username);
        let c = with_user(&format!("c{n}"), ProtocolVersion::V5, "typed", "pw");
        sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
        let expected = if as_username { "CN=dev1" } else { "typed" };
        assert_eq!(
            sim.r.conns.get(id).unwrap().username.as_deref(),
            Some(expected)
        );
    }
    let seen = auth.0.lock().unwrap().clone();
    let cert = Some("CN=dev1".to_owned());
    assert_eq!(
        seen,
        [
            (Some("typed".to_owned()), cert.clone()),
            (cert.clone(), cert)
        ]
    );
}

#[test]
fn qos_1_and_2_publishes_are_refused_while_the_store_cannot_write() {
    let mut sim = durable_sim();
    let sub_id = sim.r.accept(sim.now, origin(1)).0;
    sim.r
        .handle(sim.now, sub_id, Packet::Connect(Box::new(persistent("s"))));
    sim.r.handle(sim.now, sub_id, sub("t/#", 2));
    let ticket = sim.r.take_work().ticket;
    sim.r.durable(ticket);
    sim.out(sub_id);
    let v5 = sim.open(connect("p5", ProtocolVersion::V5, 0));
    let v3 = sim.open(connect("p3", ProtocolVersion::V311, 0));

    sim.r.store_failing(true);
    sim.r.handle(sim.now, v5, msg("t/1", QoS::AtLeastOnce, 1));
    sim.r.handle(sim.now, v5, msg("t/1", QoS::ExactlyOnce, 2));
    sim.r.handle(sim.now, v5, msg("t/0", QoS::AtMostOnce, 0));
    let out = sim.out(v5);
    assert!(
        matches!(&out[..], [Packet::PubAck(a), Packet::PubRec(b)]
            if a.reason == ReasonCode::QUOTA_EXCEEDED && b.reason == ReasonCode::QUOTA_EXCEEDED),
        "{out:?}"
    );
    // Refused: not routed, nothing for the store. QoS 0 still flows.
    let got = sim.out(sub_id);
    assert!(
        matches!(&got[..], [Packet::Publish(p)] if p.topic.as_str() == "t/0"),
        "{got:?}"
    );
    assert!(!sim.r.has_work());
    // MQTT 3 cannot be told: disconnected.
    sim.r.handle(sim.now, v3, msg("t/1", QoS::AtLeastOnce, 1));
    assert!(sim.closed(v3));

    sim.r.store_failing(false);
    sim.r.handle(sim.now, v5, msg("t/1", QoS::AtLeastOnce, 3));
    let work = sim.r.take_work();
    assert!(
        work.records
            .iter()
            .any(|r| matches!(r, Record::Accepted { .. }))
    );
}

#[test]
fn a_restored_session_resumes_where_the_store_left_it() {
    use crate::restore::{Restored, RestoredInflight, RestoredSession};
    let mut sim = Sim::new(|_| {});
    let publish = |topic: &str, qos: QoS, payload: &'static [u8]| tinsel_codec::Publish {
        dup: false,
        qos,
        retain: false,
        topic: s(topic),
        packet_id: 0,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(payload),
    };
    let mut session = RestoredSession::new(Arc::from("s"), u32::MAX);
    session.subscriptions = vec![(
        Arc::from("t/#"),
        tinsel_codec::SubscriptionOptions::new(QoS::AtLeastOnce),
        None,
    )];
    // Published at QoS 2: capped by the subscription on restore.
    session.queued = vec![publish("t/q", QoS::ExactlyOnce, b"queued")];
    session.inflight = vec![
        (
            5,
            RestoredInflight::Publish(publish("t/f", QoS::AtLeastOnce, b"flying")),
        ),
        (6, RestoredInflight::Release),
    ];
    session.incoming_qos2 = vec![9];
    let mut retained = publish("r", QoS::AtMostOnce, b"kept");
    retained.retain = true;
    sim.r.restore(
        sim.now,
        Restored::new(
            vec![session, RestoredSession::new(Arc::from("gone"), 0)],
            vec![retained],
        ),
    );
    // Disconnected, expiring from the restart; a session with expiry 0 is not restored.
    let snap = sim.r.snapshot(sim.now);
    assert_eq!(
        (snap.clients_total, snap.clients_connected, snap.retained),
        (1, 0, 1)
    );

    let id = sim.r.accept(sim.now, origin(1)).0;
    sim.r
        .handle(sim.now, id, Packet::Connect(Box::new(persistent("s"))));
    let out = sim.out(id);
    match &out[..] {
        [
            Packet::ConnAck(a),
            Packet::Publish(f),
            Packet::PubRel(r),
            Packet::Publish(q),
        ] => {
            assert!(a.session_present);
            assert!(f.dup && f.packet_id == 5 && &f.payload[..] == b"flying");
            assert_eq!(r.packet_id, 6);
            assert!(!q.dup && q.qos == QoS::AtLeastOnce && &q.payload[..] == b"queued");
            assert!(q.packet_id != 5 && q.packet_id != 6);
        }
        other => panic!("{other:?}"),
    }
    // The incoming QoS 2 id still waits for its PUBREL: a resent PUBLISH is not forwarded.
    sim.r.handle(sim.now, id, msg("t/x", QoS::ExactlyOnce, 9));
    assert!(matches!(&sim.out(id)[..], [Packet::PubRec(r)] if r.packet_id == 9));
    // The subscription is in the tree again.
    let p = sim.open(connect("p", ProtocolVersion::V311, 0));
    sim.r.handle(sim.now, p, msg("t/new", QoS::AtLeastOnce, 1));
    assert!(
        sim.out(id)
            .iter()
            .any(|x| matches!(x, Packet::Publish(m) if m.topic.as_str() == "t/new"))
    );
}

/// Lets `bob` publish to and read `open/#` while `open` is set; counts the questions; says
/// its rules keep their answers until `version` changes.
#[derive(Default)]
struct Reloadable {
    open: std::sync::atomic::AtomicBool,
    version: std::sync::atomic::AtomicU64,
    asked: std::sync::atomic::AtomicU64,
}

impl Authorizer for Reloadable {
    fn publish(&self, _: Identity<'_>, topic: &str) -> bool {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        topic.starts_with("open/") && self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn subscribe(&self, _: Identity<'_>, _: &str) -> Verdict {
        Verdict::Grant
    }

    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool {
        self.publish(who, topic)
    }

    fn rules_version(&self) -> Option<u64> {
        Some(self.version.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[test]
fn decisions_are_asked_again_only_for_another_topic_or_new_rules() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut sim = Sim::new(|_| {});
    let rules = Arc::new(Reloadable::default());
    rules.open.store(true, Relaxed);
    sim.r.set_authorizer(rules.clone());
    let bob = sim.open(connect("bob", ProtocolVersion::V5, 0));
    let sub_ = sim.open(connect("sub", ProtocolVersion::V5, 0));
    sim.r.handle(sim.now, sub_, sub("open/#", 1));
    sim.out(sub_);
    let received = |sim: &mut Sim| {
        sim.out(sub_)
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count()
    };

    for i in 0..10 {
        sim.r
            .handle(sim.now, bob, msg("open/a", QoS::AtLeastOnce, 10 + i));
    }
    assert_eq!(received(&mut sim), 10);
    // One question for the publisher, one for the subscriber.
    assert_eq!(rules.asked.load(Relaxed), 2);
    sim.r
        .handle(sim.now, bob, msg("open/b", QoS::AtMostOnce, 0));
    assert_eq!(received(&mut sim), 1);
    assert_eq!(rules.asked.load(Relaxed), 4);

    // The rules change without a new version: the old answers stand (the contract).
    rules.open.store(false, Relaxed);
    sim.r
        .handle(sim.now, bob, msg("open/b", QoS::AtMostOnce, 0));
    assert_eq!(received(&mut sim), 1);
    // A new version: asked again, refused.
    rules.version.fetch_add(1, Relaxed);
    sim.r
        .handle(sim.now, bob, msg("open/b", QoS::AtLeastOnce, 30));
    assert!(
        matches!(&sim.out(bob)[..], [.., Packet::PubAck(a)] if a.reason == ReasonCode::NOT_AUTHORIZED)
    );
    assert_eq!(received(&mut sim), 0);
    assert_eq!(rules.asked.load(Relaxed), 5);
}

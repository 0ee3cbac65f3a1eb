//! Per-listener settings (versions, mount point, topic aliases, empty client ids) and the
//! broker-wide behaviours Mosquitto configures (`clientid_prefixes`, `auto_id_prefix`,
//! `retain_available`, `upgrade_outgoing_qos`), driven step by step.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tinsel_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use super::{Sim, connect, msg, origin, s, will};
use crate::access::{Authorizer, Identity, Verdict};
use crate::connections::ConnId;
use crate::listener::{ListenerSettings, Protocols};
use crate::router::Router;
use crate::settings::Settings;

fn sim(settings: Settings) -> Sim {
    let now = Instant::now();
    Sim {
        r: Router::new(settings, now),
        now,
    }
}

/// Listener 0 plain, listener 1 mounted at `m/`, listener 2 MQTT 5 only with 2 aliases.
fn three_listeners() -> Settings {
    Settings {
        listeners: vec![
            ListenerSettings::default(),
            ListenerSettings {
                mount_point: Some(Arc::from("m/")),
                ..ListenerSettings::default()
            },
            ListenerSettings {
                protocols: Protocols::NONE.with(ProtocolVersion::V5),
                max_topic_alias: Some(2),
                ..ListenerSettings::default()
            },
        ],
        ..Settings::default()
    }
}

impl Sim {
    /// The CONNACK (or nothing) a CONNECT on `listener` gets, and the connection.
    fn try_open(&mut self, listener: u16, c: tinsel_codec::Connect) -> (ConnId, Vec<Packet>) {
        let id = self.r.accept_on(self.now, origin(1883), listener).0;
        self.r.handle(self.now, id, Packet::Connect(Box::new(c)));
        let out = self.out(id);
        (id, out)
    }

    fn open_on(&mut self, listener: u16, c: tinsel_codec::Connect) -> ConnId {
        let (id, out) = self.try_open(listener, c);
        assert!(
            matches!(&out[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::SUCCESS),
            "{out:?}"
        );
        id
    }
}

fn connack(out: &[Packet]) -> &tinsel_codec::ConnAck {
    match out.first() {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("no CONNACK: {other:?}"),
    }
}

fn topics(out: &[Packet]) -> Vec<String> {
    out.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn versions_a_listener_refuses() {
    let mut sim = sim(three_listeners());
    for (version, code) in [
        (
            ProtocolVersion::V311,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            ProtocolVersion::V31,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ),
    ] {
        let (id, out) = sim.try_open(2, connect("old", version, 0));
        assert_eq!(connack(&out).reason, code);
        assert!(sim.closed(id));
    }
    let (_, out) = sim.try_open(2, connect("new", ProtocolVersion::V5, 0));
    let ack = connack(&out);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    // The other listeners take every version, with the broker's alias maximum.
    sim.open_on(0, connect("a", ProtocolVersion::V311, 0));
    let (_, out) = sim.try_open(1, connect("b", ProtocolVersion::V5, 0));
    assert_eq!(connack(&out).properties.topic_alias_maximum, Some(10));
}

#[test]
fn alias_above_the_listeners_maximum_is_refused() {
    let mut sim = sim(three_listeners());
    let id = sim.open_on(2, connect("a", ProtocolVersion::V5, 0));
    let Packet::Publish(mut p) = msg("t", QoS::AtMostOnce, 0) else {
        unreachable!()
    };
    p.properties.make_mut().topic_alias = Some(3);
    sim.r.handle(sim.now, id, Packet::Publish(p));
    let out = sim.out(id);
    assert!(
        matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::TOPIC_ALIAS_INVALID),
        "{out:?}"
    );
}

#[test]
fn a_mount_point_prefixes_what_comes_in_and_strips_what_goes_out() {
    let mut sim = sim(three_listeners());
    let plain = sim.open_on(0, connect("plain", ProtocolVersion::V311, 0));
    let mounted = sim.open_on(1, connect("mounted", ProtocolVersion::V5, 0));
    sim.subscribe(plain, "#", QoS::AtLeastOnce);
    sim.subscribe(mounted, "#", QoS::AtLeastOnce);
    // From the mounted client: others see the prefix, it sees its own topic.
    sim.r
        .handle(sim.now, mounted, msg("a/b", QoS::AtMostOnce, 0));
    assert_eq!(topics(&sim.out(plain)), ["m/a/b"]);
    assert_eq!(topics(&sim.out(mounted)), ["a/b"]);
    // From outside: only what is under the mount point reaches it, stripped, at any QoS.
    sim.r.handle(sim.now, plain, msg("x/y", QoS::AtMostOnce, 0));
    sim.r
        .handle(sim.now, plain, msg("m/x", QoS::AtLeastOnce, 1));
    sim.r.handle(sim.now, plain, msg("m/", QoS::AtMostOnce, 0));
    assert_eq!(topics(&sim.out(mounted)), ["x"]);
    assert_eq!(topics(&sim.out(plain)), ["x/y", "m/x", "m/"]);
}

#[test]
fn retained_messages_and_wills_under_a_mount_point() {
    let mut sim = sim(three_listeners());
    let plain = sim.open_on(0, connect("plain", ProtocolVersion::V311, 0));
    for topic in ["m/r", "r"] {
        let Packet::Publish(mut p) = msg(topic, QoS::AtMostOnce, 0) else {
            unreachable!()
        };
        p.retain = true;
        sim.r.handle(sim.now, plain, Packet::Publish(p));
    }
    let mut c = connect("mounted", ProtocolVersion::V311, 0);
    c.will = Some(will("gone", None));
    let mounted = sim.open_on(1, c);
    sim.subscribe(plain, "m/gone", QoS::AtMostOnce);
    sim.r.handle(
        sim.now,
        mounted,
        Packet::Subscribe(tinsel_codec::Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(s("#"), Default::default())],
        }),
    );
    assert_eq!(topics(&sim.out(mounted)), ["r"]);
    sim.r.connection_lost(sim.now, mounted, "gone");
    assert_eq!(topics(&sim.out(plain)), ["m/gone"]);
}

#[test]
fn shared_subscriptions_and_unsubscribe_under_a_mount_point() {
    let mut sim = sim(three_listeners());
    let plain = sim.open_on(0, connect("plain", ProtocolVersion::V5, 0));
    let mounted = sim.open_on(1, connect("mounted", ProtocolVersion::V5, 0));
    sim.subscribe(mounted, "$share/g/s/#", QoS::AtMostOnce);
    sim.r
        .handle(sim.now, plain, msg("m/s/1", QoS::AtMostOnce, 0));
    sim.r.handle(sim.now, plain, msg("s/2", QoS::AtMostOnce, 0));
    assert_eq!(topics(&sim.out(mounted)), ["s/1"]);
    sim.r.handle(
        sim.now,
        mounted,
        Packet::Unsubscribe(tinsel_codec::Unsubscribe {
            packet_id: 2,
            properties: Default::default(),
            filters: vec![s("$share/g/s/#")],
        }),
    );
    let out = sim.out(mounted);
    assert!(
        matches!(&out[..], [Packet::UnsubAck(u)] if u.reasons == [ReasonCode::SUCCESS]),
        "{out:?}"
    );
}

/// Records what the authorizer was asked, with the listener.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u16)>>);

impl Authorizer for Recorder {
    fn publish(&self, who: Identity<'_>, topic: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .push((format!("pub {topic}"), who.listener));
        true
    }
    fn subscribe(&self, who: Identity<'_>, filter: &str) -> Verdict {
        self.0
            .lock()
            .unwrap()
            .push((format!("sub {filter}"), who.listener));
        Verdict::Grant
    }
    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .push((format!("get {topic}"), who.listener));
        true
    }
}

#[test]
fn the_authorizer_sees_the_listener_and_the_mounted_topic() {
    let mut sim = sim(three_listeners());
    let rec = Arc::new(Recorder::default());
    sim.r.set_authorizer(rec.clone());
    let mounted = sim.open_on(1, connect("mounted", ProtocolVersion::V311, 0));
    sim.subscribe(mounted, "a", QoS::AtMostOnce);
    sim.r.handle(sim.now, mounted, msg("a", QoS::AtMostOnce, 0));
    let asked = rec.0.lock().unwrap().clone();
    let want: Vec<(String, u16)> = [("sub m/a", 1), ("pub m/a", 1), ("get m/a", 1)]
        .iter()
        .map(|(a, l)| (a.to_string(), *l))
        .collect();
    assert_eq!(asked, want);
}

#[test]
fn client_id_prefixes_refuse_as_mosquitto_does() {
    let mut sim = sim(Settings {
        clientid_prefixes: vec!["dev-".into()],
        auto_id_prefix: "dev-auto-".into(),
        ..Settings::default()
    });
    let (id, out) = sim.try_open(0, connect("other", ProtocolVersion::V311, 0));
    assert_eq!(connack(&out).reason, ReasonCode::NOT_AUTHORIZED);
    assert!(sim.closed(id));
    let (_, out) = sim.try_open(0, connect("other", ProtocolVersion::V5, 0));
    assert_eq!(connack(&out).reason, ReasonCode::NOT_AUTHORIZED);
    sim.open_on(0, connect("dev-1", ProtocolVersion::V311, 0));
    // An assigned id carries the prefix, and so passes.
    let (_, out) = sim.try_open(0, connect("", ProtocolVersion::V5, 0));
    let ack = connack(&out);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let assigned = ack.properties.assigned_client_identifier.as_ref().unwrap();
    assert!(assigned.starts_with("dev-auto-"), "{assigned}");
}

#[test]
fn empty_client_ids_refused_per_listener() {
    let mut sim = sim(Settings {
        listeners: vec![ListenerSettings {
            refuse_empty_client_id: true,
            ..ListenerSettings::default()
        }],
        ..Settings::default()
    });
    let (_, out) = sim.try_open(0, connect("", ProtocolVersion::V311, 0));
    assert_eq!(
        connack(&out).reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    sim.open_on(1, connect("", ProtocolVersion::V311, 0));
}

#[test]
fn retain_not_available() {
    let mut sim = sim(Settings {
        retain_available: false,
        ..Settings::default()
    });
    let (_, out) = sim.try_open(0, connect("v5", ProtocolVersion::V5, 0));
    assert_eq!(connack(&out).properties.retain_available, Some(0));
    let v5 = out_id(&mut sim, ProtocolVersion::V5);
    let v3 = out_id(&mut sim, ProtocolVersion::V311);
    for id in [v5, v3] {
        let Packet::Publish(mut p) = msg("t", QoS::AtMostOnce, 0) else {
            unreachable!()
        };
        p.retain = true;
        sim.r.handle(sim.now, id, Packet::Publish(p));
    }
    let (out, close) = sim.take(v5);
    assert!(close);
    assert!(
        matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::RETAIN_NOT_SUPPORTED),
        "{out:?}"
    );
    let (out, close) = sim.take(v3);
    assert!(close && out.is_empty(), "{out:?}");
    // A retained will: MQTT 5 is told, MQTT 3 is closed without a CONNACK.
    for (version, want) in [(ProtocolVersion::V5, 1), (ProtocolVersion::V311, 0)] {
        let mut c = connect("w", version, 0);
        let mut w = will("w", None);
        w.retain = true;
        c.will = Some(w);
        let (id, out) = sim.try_open(0, c);
        assert_eq!(out.len(), want, "{out:?}");
        if want == 1 {
            assert_eq!(connack(&out).reason, ReasonCode::RETAIN_NOT_SUPPORTED);
        }
        assert!(sim.closed(id));
    }
}

fn out_id(sim: &mut Sim, version: ProtocolVersion) -> ConnId {
    let name = format!("c{}", version.level());
    sim.open_on(0, connect(&name, version, 0))
}

#[test]
fn upgrade_outgoing_qos_delivers_at_the_subscriptions_qos() {
    for (upgrade, want) in [(false, QoS::AtMostOnce), (true, QoS::ExactlyOnce)] {
        let mut sim = sim(Settings {
            upgrade_outgoing_qos: upgrade,
            ..Settings::default()
        });
        let sub = sim.open_on(0, connect("sub", ProtocolVersion::V311, 0));
        let publisher = sim.open_on(0, connect("pub", ProtocolVersion::V311, 0));
        sim.subscribe(sub, "t", QoS::ExactlyOnce);
        sim.r
            .handle(sim.now, publisher, msg("t", QoS::AtMostOnce, 0));
        let out = sim.out(sub);
        let got: Vec<QoS> = out
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(Publish { qos, .. }) => Some(*qos),
                _ => None,
            })
            .collect();
        assert_eq!(got, [want], "upgrade {upgrade}");
    }
}

#[test]
fn a_link_gets_no_listeners_settings() {
    let mut sim = sim(Settings {
        listeners: vec![ListenerSettings {
            mount_point: Some(Arc::from("m/")),
            protocols: Protocols::NONE.with(ProtocolVersion::V5),
            ..ListenerSettings::default()
        }],
        ..Settings::default()
    });
    let link = sim
        .r
        .accept(
            sim.now,
            crate::connections::Origin::Link(Arc::from("bridge")),
        )
        .0;
    assert_eq!(sim.r.listener_of(link), Some(crate::listener::NO_LISTENER));
    sim.r.handle(
        sim.now,
        link,
        Packet::Connect(Box::new(connect("bridge", ProtocolVersion::V311, 0))),
    );
    assert_eq!(connack(&sim.out(link)).reason, ReasonCode::SUCCESS);
    sim.subscribe(link, "#", QoS::AtMostOnce);
    let mounted = sim.open_on(0, connect("m", ProtocolVersion::V5, 0));
    sim.r.handle(sim.now, mounted, msg("x", QoS::AtMostOnce, 0));
    assert_eq!(topics(&sim.out(link)), ["m/x"]);
}

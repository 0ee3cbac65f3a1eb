//! Bridges: what a client that sets the bridge bit of the protocol level gets (Mosquitto's
//! `try_private`), and a link connection.

use tinsel_codec::{Packet, ProtocolVersion, QoS};

use super::{Sim, connect, msg};
use crate::connections::Origin;

fn bridge(id: &str, version: ProtocolVersion) -> tinsel_codec::Connect {
    let mut c = connect(id, version, 0);
    c.bridge = true;
    c
}

#[test]
fn an_mqtt3_bridge_gets_no_local_and_retain_as_published() {
    let mut sim = Sim::new(|_| {});
    let b = sim.open(bridge("bridge", ProtocolVersion::V311));
    let plain = sim.open(connect("plain", ProtocolVersion::V311, 0));
    let other = sim.open(connect("other", ProtocolVersion::V311, 0));
    sim.subscribe(b, "#", QoS::AtMostOnce);
    sim.subscribe(plain, "#", QoS::AtMostOnce);

    // What the bridge forwards here is not sent back to it; an ordinary client still gets
    // its own messages back (MQTT 3 has no No Local).
    sim.r
        .handle(sim.now, b, msg("from/bridge", QoS::AtMostOnce, 0));
    assert!(sim.out(b).is_empty());
    assert_eq!(sim.out(plain).len(), 1);
    sim.r
        .handle(sim.now, plain, msg("from/plain", QoS::AtMostOnce, 0));
    assert_eq!(sim.out(plain).len(), 1);
    assert_eq!(sim.out(b).len(), 1);

    // A retained message keeps its retain flag towards the bridge only.
    let Packet::Publish(mut p) = msg("kept", QoS::AtMostOnce, 0) else {
        unreachable!()
    };
    p.retain = true;
    sim.r.handle(sim.now, other, Packet::Publish(p));
    let to_bridge = sim.out(b);
    let to_plain = sim.out(plain);
    assert!(matches!(&to_bridge[..], [Packet::Publish(p)] if p.retain));
    assert!(matches!(&to_plain[..], [Packet::Publish(p)] if !p.retain));
}

#[test]
fn the_bridge_bit_does_nothing_for_mqtt5() {
    // MQTT 5 bridges ask for No Local themselves, per subscription.
    let mut sim = Sim::new(|_| {});
    let b = sim.open(bridge("bridge", ProtocolVersion::V5));
    sim.subscribe(b, "#", QoS::AtMostOnce);
    sim.r.handle(sim.now, b, msg("t", QoS::AtMostOnce, 0));
    assert_eq!(sim.out(b).len(), 1);
}

#[test]
fn a_link_is_a_connection_like_any_other() {
    let mut sim = Sim::new(|_| {});
    let (link, _outbox) = sim.r.accept(sim.now, Origin::Link("b1".into()));
    sim.r.handle(
        sim.now,
        link,
        Packet::Connect(Box::new(connect("link", ProtocolVersion::V5, 0))),
    );
    assert!(matches!(sim.out(link)[..], [Packet::ConnAck(_)]));
    let plain = sim.open(connect("plain", ProtocolVersion::V311, 0));
    sim.subscribe(link, "a/#", QoS::AtLeastOnce);
    sim.r
        .handle(sim.now, plain, msg("a/b", QoS::AtLeastOnce, 7));
    assert!(matches!(sim.out(plain)[..], [Packet::PubAck(_)]));
    assert!(matches!(&sim.out(link)[..], [Packet::Publish(p)] if p.topic.as_str() == "a/b"));
}

#[test]
fn a_bridge_state_is_the_only_sys_topic_clients_may_publish() {
    let mut sim = Sim::new(|_| {});
    let watcher = sim.open(connect("watcher", ProtocolVersion::V311, 0));
    let b = sim.open(bridge("bridge", ProtocolVersion::V311));
    sim.subscribe(watcher, "$SYS/#", QoS::AtMostOnce);
    sim.r.handle(
        sim.now,
        b,
        msg("$SYS/broker/connection/site.b/state", QoS::AtMostOnce, 0),
    );
    sim.r
        .handle(sim.now, b, msg("$SYS/broker/uptime", QoS::AtMostOnce, 0));
    sim.r.handle(
        sim.now,
        b,
        msg("$SYS/broker/connection/a/b/state", QoS::AtMostOnce, 0),
    );
    let got = sim.out(watcher);
    assert!(
        matches!(&got[..], [Packet::Publish(p)] if p.topic.as_str() == "$SYS/broker/connection/site.b/state"),
        "{got:?}"
    );
}

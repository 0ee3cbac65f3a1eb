//! Deterministic simulation of the broker core: many simulated MQTT 3.1.1 and 5.0 clients,
//! random connects, subscriptions (wildcards, shared), publishes at every QoS, retained
//! messages, wills, disconnects, lost and half-open connections, reconnects to sessions and
//! virtual time, checked against a model after every step (see `sim/mod.rs`).
//!
//! ```text
//! cargo test -p tinsel-core --test simulation                    # 200 seeds x 300 steps
//! SIM_SEED=17 cargo test -p tinsel-core --test simulation -- --nocapture   # one seed
//! SIM_SEEDS=5000 SIM_STEPS=500 cargo test --release -p tinsel-core --test simulation
//! ```
//!
//! A failure prints the seed, the violated invariant and the last steps of its log.

mod sim;

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[test]
fn random_seeds() {
    let steps = env("SIM_STEPS").map_or(300, |s| s as usize);
    if let Some(seed) = env("SIM_SEED") {
        sim::run(seed, steps);
        return;
    }
    let seeds = env("SIM_SEEDS").unwrap_or(200);
    let first = env("SIM_FIRST").unwrap_or(0);
    for seed in first..first + seeds {
        sim::run(seed, steps);
    }
}

/// Found by the `core` fuzz target: a connected MQTT 5 client whose next bytes are a CONNECT
/// with an unknown protocol level was closed with DISCONNECT 0x84, which is not a DISCONNECT
/// reason code [MQTT-3.14.2.1] (its own decoder rejects it); it gets 0x82 Protocol Error.
#[test]
fn bad_second_connect_gets_a_valid_disconnect() {
    use bytes::BytesMut;
    use tinsel_codec::{Connect, DecodeError, Packet, Properties, ProtocolVersion};
    use tinsel_core::{Origin, Router, Settings};

    let now = std::time::Instant::now();
    let mut r = Router::new(Settings::default(), now);
    let (id, out) = r.accept(now, Origin::Network(([127, 0, 0, 1], 1).into()));
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::default(),
        client_id: "a".try_into().unwrap(),
        will: None,
        username: None,
        password: None,
        bridge: false,
    };
    r.handle(now, id, Packet::Connect(Box::new(c)));
    r.decode_error(now, id, &DecodeError::UnsupportedProtocolLevel(9));
    let mut bytes: BytesMut = out.take(None).bytes;
    while !bytes.is_empty() {
        tinsel_codec::decode_packet(&mut bytes, ProtocolVersion::V5, u32::MAX)
            .expect("the broker writes only valid packets");
    }
}

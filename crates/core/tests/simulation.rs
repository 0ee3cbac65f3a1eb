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

//! Topic tree and retained store benchmarks.
//!
//! `cargo bench -p tinsel-core --bench topic_tree`
//!
//! - `match/10k_subs`: one topic matched against 10,000 subscriptions, a mix of exact
//!   filters, filters with `+` and filters ending in `#`, laid out like a building
//!   automation system (`site/{s}/floor/{f}/room/{r}/{sensor}`).
//! - `churn/insert_remove_10k`: subscribe and unsubscribe a filter with a new branch.
//! - `retained/hash_10k`: `site/3/#` over 10,000 retained topics (one site's branch), and
//!   `#` over all of them.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tinsel_core::retained_tree::RetainedStore;
use tinsel_core::topic_tree::TopicTree;

const SENSORS: [&str; 5] = ["temp", "humidity", "co2", "light", "motion"];

/// 10,000 topics: 10 sites x 10 floors x 20 rooms x 5 sensors.
fn topics() -> Vec<String> {
    let mut out = Vec::with_capacity(10_000);
    for s in 0..10 {
        for f in 0..10 {
            for r in 0..20 {
                for sensor in SENSORS {
                    out.push(format!("site/{s}/floor/{f}/room/{r}/{sensor}"));
                }
            }
        }
    }
    out
}

/// 10,000 subscriptions: 70 % exact, 20 % with `+`, 10 % ending in `#`.
fn subscriptions() -> TopicTree<u32, u8> {
    let topics = topics();
    let mut tree = TopicTree::new();
    for (i, topic) in topics.iter().enumerate() {
        let i = i as u32;
        let filter = match i % 10 {
            0..=6 => topic.clone(),
            7 => {
                // Any sensor of one room.
                let (room, _) = topic.rsplit_once('/').expect("topic has levels");
                format!("{room}/+")
            }
            8 => {
                // One sensor of every room on a floor.
                let levels: Vec<&str> = topic.split('/').collect();
                format!(
                    "site/{}/floor/{}/room/+/{}",
                    levels[1], levels[3], levels[6]
                )
            }
            _ => {
                // Everything on one floor.
                let levels: Vec<&str> = topic.split('/').collect();
                format!("site/{}/floor/{}/#", levels[1], levels[3])
            }
        };
        tree.insert(&filter, i, 1);
    }
    tree
}

fn bench_match(c: &mut Criterion) {
    let tree = subscriptions();
    let topics = topics();
    let mut group = c.benchmark_group("match");
    group.bench_function("10k_subs", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % topics.len();
            let mut n = 0u32;
            tree.for_each_match(black_box(&topics[i]), |_, v| n += u32::from(*v));
            n
        })
    });
    group.bench_function("10k_subs_no_match", |b| {
        b.iter(|| {
            let mut n = 0u32;
            tree.for_each_match(black_box("site/3/floor/4/attic/1/temp"), |_, v| {
                n += u32::from(*v)
            });
            n
        })
    });
    group.finish();

    // Subscribe and unsubscribe one filter in the 10k tree: the new branch is created and
    // pruned again each time.
    let mut tree = subscriptions();
    let mut group = c.benchmark_group("churn");
    group.bench_function("insert_remove_10k", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let filter = "site/3/floor/4/annex/+/door";
            tree.insert(filter, i, 1);
            tree.remove(black_box(filter), &i)
        })
    });
    group.finish();
}

fn bench_retained(c: &mut Criterion) {
    let mut store = RetainedStore::new();
    for (i, topic) in topics().iter().enumerate() {
        store.insert(topic, i as u32);
    }
    let mut group = c.benchmark_group("retained");
    group.bench_function("site_hash_10k", |b| {
        b.iter(|| {
            let mut n = 0u32;
            store.for_each_match(black_box("site/3/#"), |_, m| n = n.wrapping_add(*m));
            n
        })
    });
    group.bench_function("all_hash_10k", |b| {
        b.iter(|| {
            let mut n = 0u32;
            store.for_each_match(black_box("#"), |_, m| n = n.wrapping_add(*m));
            n
        })
    });
    group.bench_function("plus_10k", |b| {
        b.iter(|| {
            let mut n = 0u32;
            store.for_each_match(black_box("site/+/floor/+/room/7/co2"), |_, m| {
                n = n.wrapping_add(*m)
            });
            n
        })
    });
    group.bench_function("exact_10k", |b| {
        b.iter(|| store.get(black_box("site/3/floor/4/room/5/co2")).copied())
    });
    group.finish();
}

criterion_group!(benches, bench_match, bench_retained);
criterion_main!(benches);

//! The cost FileAccess adds per delivery: `Authorizer::deliver` on a 1,000-user ACL file
//! (5,000 `topic` lines, four patterns), a client's rules cached, against no authorizer.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tinsel_auth::AclFile;
use tinsel_broker::{Authorizer, FileAccess, Identity};

fn big_file() -> String {
    let mut s = String::from(
        "topic read public/#\npattern readwrite devices/%c/#\npattern read users/%u/inbox/#\npattern deny devices/%c/secret\npattern write telemetry/%u/+\n",
    );
    for u in 0..1000 {
        let _ = write!(
            s,
            "user user{u}\ntopic readwrite home/{u}/#\ntopic read shared/+/status\ntopic write cmd/{u}/+\ntopic deny home/{u}/private/#\ntopic read sensors/{u}/temperature\n"
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let access = FileAccess::new(
        false,
        None,
        Some(AclFile::parse(&big_file(), "bench").unwrap()),
    );
    let who = Identity {
        client_id: "device-17",
        username: Some("user500"),
        listener: 0,
    };
    c.bench_function("deliver, 1,000-user ACL, cached client", |b| {
        b.iter(|| access.deliver(black_box(who), black_box("home/500/kitchen/light")))
    });
    let open = FileAccess::new(true, None, None);
    c.bench_function("deliver, no ACL file", |b| {
        b.iter(|| open.deliver(black_box(who), black_box("home/500/kitchen/light")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The cost of ACL decisions on a file of 1,000 users and a few patterns, and of a password
//! check at the default iteration count.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tinsel_auth::{Access, AclFile, HashKind, PasswordHash};

/// 1,000 users with five lines each (5,000 `topic` lines) and four patterns.
fn big_file() -> String {
    let mut s = String::from("topic read public/#\n");
    for p in [
        "pattern readwrite devices/%c/#",
        "pattern read users/%u/inbox/#",
        "pattern deny devices/%c/secret",
        "pattern write telemetry/%u/+",
    ] {
        s.push_str(p);
        s.push('\n');
    }
    for u in 0..1000 {
        let _ = writeln!(s, "user user{u}");
        let _ = writeln!(s, "topic readwrite home/{u}/#");
        let _ = writeln!(s, "topic read shared/+/status");
        let _ = writeln!(s, "topic write cmd/{u}/+");
        let _ = writeln!(s, "topic deny home/{u}/private/#");
        let _ = writeln!(s, "topic read sensors/{u}/temperature");
    }
    s
}

fn bench(c: &mut Criterion) {
    let acl = AclFile::parse(&big_file(), "bench").unwrap();
    let client = acl.client("device-17", Some("user500"));

    c.bench_function("acl check, held ClientAcl, user grant", |b| {
        b.iter(|| client.check(black_box("home/500/kitchen/light"), Access::Write))
    });
    c.bench_function(
        "acl check, held ClientAcl, falls through to patterns",
        |b| b.iter(|| client.check(black_box("users/user500/inbox/1"), Access::Read)),
    );
    c.bench_function("acl check, held ClientAcl, refused", |b| {
        b.iter(|| client.check(black_box("home/501/kitchen/light"), Access::Read))
    });
    c.bench_function("acl check, one-shot (builds ClientAcl)", |b| {
        b.iter(|| {
            acl.check(
                "device-17",
                Some("user500"),
                black_box("home/500/kitchen/light"),
                Access::Write,
            )
        })
    });
    c.bench_function("acl subscribe_filter home/#", |b| {
        b.iter(|| client.subscribe_filter(black_box("home/#")))
    });
    let hash = PasswordHash::new(HashKind::Sha512Pbkdf2, 101, b"password").unwrap();
    c.bench_function("password verify $7$ 101 iterations", |b| {
        b.iter(|| hash.verify(black_box(b"password")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

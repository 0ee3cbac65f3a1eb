//! The ACL file and the table of cases that Tinsel and Mosquitto must decide alike. Shared by
//! `crates/auth/tests/mosquitto_peer.rs` (tinsel-auth's decisions against a running Mosquitto)
//! and `crates/broker/tests/access_mosquitto.rs` (a running Tinsel against a running
//! Mosquitto), so both judge the same cases.
#![allow(dead_code)]

/// The ACL file both brokers judge by. `spy` may read and write every non-`$` topic and
/// observes the cases.
pub(crate) const ACL: &str = "\
# anonymous clients
topic read public/#
topic deny public/private
topic write inbox/anon

user spy
topic readwrite #
topic read $SYS/#

user alice
topic readwrite home/#
topic deny home/safe/#
topic write cmd/+/set
topic read status/+
topic read a b/c d

user bob
topic read home/+/temp
topic home/bob

user e+vil
topic readwrite evil/#

pattern readwrite devices/%c/#
pattern deny devices/%c/keys
pattern read users/%u/inbox
pattern write users/%u/outbox/+
pattern read shared/%c/%u
";

/// (client id, username, topic): each is asked for both writing and reading.
pub(crate) const CASES: &[(&str, Option<&str>, &str)] = &[
    ("anon1", None, "public/news"),
    ("anon1", None, "public/private"),
    ("anon1", None, "public"),
    ("anon1", None, "inbox/anon"),
    ("anon1", None, "home/x"),
    ("anon1", None, "devices/anon1/state"),
    ("anon1", None, "devices/anon1/keys"),
    ("anon1", None, "devices/other/state"),
    ("anon1", None, "users//inbox"),
    ("c-alice", Some("alice"), "home"),
    ("c-alice", Some("alice"), "home/kitchen/light"),
    ("c-alice", Some("alice"), "home/safe"),
    ("c-alice", Some("alice"), "home/safe/door"),
    ("c-alice", Some("alice"), "cmd/lamp/set"),
    ("c-alice", Some("alice"), "cmd/lamp/set/now"),
    ("c-alice", Some("alice"), "status/x"),
    ("c-alice", Some("alice"), "status/x/y"),
    ("c-alice", Some("alice"), "a b/c d"),
    ("c-alice", Some("alice"), "public/news"),
    ("c-alice", Some("alice"), "devices/c-alice/keys"),
    ("c-alice", Some("alice"), "devices/c-alice/x/y"),
    ("c-alice", Some("alice"), "users/alice/inbox"),
    ("c-alice", Some("alice"), "users/alice/outbox/1"),
    ("c-alice", Some("alice"), "users/bob/inbox"),
    ("c-alice", Some("alice"), "shared/c-alice/alice"),
    ("c-alice", Some("alice"), "$SYS/broker/x"),
    ("c-alice", Some("alice"), "$SYS/broker/connection/x/state"),
    ("c-alice", Some("alice"), "$other/x"),
    ("c-bob", Some("bob"), "home/kitchen/temp"),
    ("c-bob", Some("bob"), "home/bob"),
    ("c-bob", Some("bob"), "home/safe/temp"),
    ("c-bob", Some("bob"), "devices/c-bob/keys"),
    ("c-bob", Some("bob"), "/leading/slash"),
    ("c-carol", Some("carol"), "users/carol/inbox"),
    ("c-carol", Some("carol"), "devices/c-carol/a"),
    ("c-carol", Some("carol"), "public/news"),
    ("c-evil", Some("e+vil"), "evil/x"),
    ("c-evil", Some("e+vil"), "devices/c-evil/a"),
    ("d+1", Some("carol"), "users/carol/inbox"),
    ("d1", Some("carol"), "devices/d1/a"),
    ("d#", None, "public/news"),
];

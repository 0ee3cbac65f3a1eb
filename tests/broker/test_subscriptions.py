"""Wildcards, the `$` rule, overlapping subscriptions, v5 subscription options, shared subscriptions,
unsubscribe and filter validation."""

import pytest

import rawmqtt as raw
from brokertest import V5, V311, prop, props, sub_options, topic_base, uid, xfail_on_mosquitto
from paho.mqtt.packettypes import PacketTypes

TOPICS = ["a", "a/b", "a/b/c", "a/x/c", "b/b", "a//c", "/a"]


WILDCARD_CASES = [
    ("a/b", ["a/b"]),
    ("a/+", ["a/b"]),
    ("a/+/c", ["a/b/c", "a/x/c", "a//c"]),
    ("+/b", ["a/b", "b/b"]),
    ("a/#", ["a", "a/b", "a/b/c", "a/x/c", "a//c"]),
    ("#", TOPICS),
    ("+", ["a"]),
    ("+/+", ["a/b", "b/b", "/a"]),
    ("/+", ["/a"]),
    ("+/#", TOPICS),
]


def test_wildcards(any_broker, connected):
    """One subscriber per filter (all under a per-test prefix); each gets exactly its matches."""
    base = topic_base()
    subs = []
    for filt, matches in WILDCARD_CASES:
        sub = connected(any_broker)
        sub.subscribe(f"{base}/{filt}", qos=1)
        subs.append((filt, matches, sub))
    pub = connected(any_broker)
    for t in TOPICS:
        pub.publish(f"{base}/{t}", t.encode(), qos=1)
    for filt, matches, sub in subs:
        got = sorted(m.payload.decode() for m in sub.expect_n(len(matches)))
        assert got == sorted(matches), filt
    for filt, matches, sub in subs:
        sub.expect_none(0.05)


def test_dollar_topics_not_matched_by_leading_wildcards(any_broker, connected):
    tag = uuid_tag()
    hash_sub = connected(any_broker)
    hash_sub.subscribe("#", qos=0)
    plus_sub = connected(any_broker)
    plus_sub.subscribe(f"+/{tag}", qos=0)
    dollar_sub = connected(any_broker)
    dollar_sub.subscribe(f"$test/{tag}/#", qos=0)
    pub = connected(any_broker)
    pub.publish(f"$test/{tag}", b"dollar", qos=1)
    pub.publish(f"$test/{tag}/x", b"dollar-x", qos=1)
    pub.publish(f"plain/{tag}", b"plain", qos=1)
    assert sorted(m.payload for m in dollar_sub.expect_n(2)) == [b"dollar", b"dollar-x"]
    dollar_sub.expect_none(0.3)
    assert plus_sub.expect().payload == b"plain"
    plus_sub.expect_none(0.3)
    # `#` sees the plain topic (and maybe other tests' traffic), never a `$` topic.
    seen = [m.topic for m in _drain(hash_sub)]
    assert f"plain/{tag}" in seen
    assert not [t for t in seen if t.startswith("$")], seen


def uuid_tag():
    return uid("tag")


def _drain(peer, quiet=0.5):
    out = []
    while True:
        try:
            out.append(peer.messages.get(timeout=quiet))
        except Exception:
            return out


def test_v311_overlapping_subscriptions_one_delivery_at_max_qos(any_broker, connected):
    base = topic_base()
    sub = connected(any_broker, protocol=V311)
    sub.subscribe(f"{base}/+", qos=1)
    sub.subscribe(f"{base}/#", qos=0)
    sub.subscribe(f"{base}/x", qos=2)
    pub = connected(any_broker)
    pub.publish(f"{base}/x", b"overlap", qos=2)
    m = sub.expect()
    assert (m.topic, m.payload, m.qos) == (f"{base}/x", b"overlap", 2)
    sub.expect_none()
    pub.publish(f"{base}/y", b"two-match", qos=2)
    m = sub.expect()
    assert (m.payload, m.qos) == (b"two-match", 1)
    sub.expect_none()


def test_v5_overlapping_subscriptions_carry_all_identifiers(request, any_broker, connected):
    xfail_on_mosquitto(
        request, any_broker, "sends one copy per matching subscription, each with its own identifier (MQTT-3.3.4-5)"
    )
    base = topic_base()
    sub = connected(any_broker, protocol=V5)
    sub.subscribe(f"{base}/+", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=5))
    sub.subscribe(f"{base}/#", qos=0, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=700))
    sub.subscribe(f"{base}/z", qos=2)  # no identifier
    pub = connected(any_broker)
    pub.publish(f"{base}/x", b"two-ids", qos=2)
    m = sub.expect()
    assert (m.payload, m.qos) == (b"two-ids", 1)
    assert sorted(prop(m, "SubscriptionIdentifier")) == [5, 700]
    sub.expect_none()
    pub.publish(f"{base}/z", b"three-subs", qos=2)
    m = sub.expect()
    assert (m.payload, m.qos) == (b"three-subs", 2)
    assert sorted(prop(m, "SubscriptionIdentifier")) == [5, 700]
    sub.expect_none()


def test_v5_subscription_identifier_single(any_broker, connected):
    base = topic_base()
    sub = connected(any_broker, protocol=V5)
    sub.subscribe(f"{base}/a", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42))
    sub.subscribe(f"{base}/b", qos=1)
    pub = connected(any_broker)
    pub.publish(f"{base}/a", b"with-id", qos=1)
    pub.publish(f"{base}/b", b"without-id", qos=1)
    got = {m.payload: prop(m, "SubscriptionIdentifier") for m in sub.expect_n(2)}
    assert got == {b"with-id": [42], b"without-id": None}


def test_v5_no_local(any_broker, connected):
    t = topic_base() + "/nl"
    me = connected(any_broker, protocol=V5)
    me.subscribe(t, options=sub_options(qos=1, no_local=True))
    other = connected(any_broker, protocol=V5)
    other.subscribe(t, qos=1)
    me.publish(t, b"from-me", qos=1)
    assert other.expect().payload == b"from-me"
    me.expect_none()
    other.publish(t, b"from-other", qos=1)
    assert me.expect().payload == b"from-other"
    assert other.expect().payload == b"from-other"


def test_v5_retain_as_published(any_broker, connected):
    t = topic_base() + "/rap"
    keep = connected(any_broker, protocol=V5)
    keep.subscribe(t, options=sub_options(qos=1, retain_as_published=True))
    clear = connected(any_broker, protocol=V5)
    clear.subscribe(t, options=sub_options(qos=1, retain_as_published=False))
    pub = connected(any_broker, protocol=V5)
    pub.publish(t, b"retained-live", qos=1, retain=True)
    m = keep.expect()
    assert (m.payload, m.retain) == (b"retained-live", True)
    m = clear.expect()
    assert (m.payload, m.retain) == (b"retained-live", False)
    pub.publish(t, b"plain-live", qos=1, retain=False)
    assert keep.expect().retain is False


def test_v5_retain_handling(any_broker, connected):
    base = topic_base()
    pub = connected(any_broker)
    pub.publish(f"{base}/r", b"stored", qos=1, retain=True)
    sub = connected(any_broker, protocol=V5)

    # 0: send retained at every subscribe, including a re-subscribe.
    sub.subscribe(f"{base}/+", options=sub_options(qos=1, retain_handling=0))
    m = sub.expect()
    assert (m.payload, m.retain) == (b"stored", True)
    sub.subscribe(f"{base}/+", options=sub_options(qos=1, retain_handling=0))
    m = sub.expect()
    assert (m.payload, m.retain) == (b"stored", True)
    sub.expect_none(0.3)

    # 1: only when the subscription is new.
    sub.subscribe(f"{base}/#", options=sub_options(qos=1, retain_handling=1))
    # (overlaps `+`; whichever way the broker counts copies, it is retained and new)
    got = [m for m in _drain(sub, 0.5)]
    assert got and all(m.payload == b"stored" and m.retain for m in got)
    sub.subscribe(f"{base}/#", options=sub_options(qos=1, retain_handling=1))
    sub.expect_none()

    # 2: never.
    other = connected(any_broker, protocol=V5)
    other.subscribe(f"{base}/r", options=sub_options(qos=1, retain_handling=2))
    other.expect_none()
    pub.publish(f"{base}/r", b"live", qos=1)
    assert other.expect().payload == b"live"


def test_v5_retain_handling_1_single_subscription(any_broker, connected):
    base = topic_base()
    connected(any_broker).publish(f"{base}/r", b"stored", qos=1, retain=True)
    sub = connected(any_broker, protocol=V5)
    sub.subscribe(f"{base}/r", options=sub_options(qos=1, retain_handling=1))
    m = sub.expect()
    assert (m.payload, m.retain) == (b"stored", True)
    sub.subscribe(f"{base}/r", options=sub_options(qos=1, retain_handling=1))
    sub.expect_none()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_shared_subscription_balanced(any_broker, connected, protocol):
    base = topic_base()
    members = [connected(any_broker, protocol=protocol) for _ in range(3)]
    for m in members:
        assert m.subscribe(f"$share/grp/{base}/#", qos=1) == [1]
    other_group = connected(any_broker, protocol=protocol)
    other_group.subscribe(f"$share/other/{base}/+", qos=1)
    plain = connected(any_broker, protocol=protocol)
    plain.subscribe(f"{base}/#", qos=1)
    pub = connected(any_broker)
    n = 30
    for i in range(n):
        pub.publish(f"{base}/t", str(i).encode(), qos=1, wait=(i == n - 1))
    assert sorted(int(m.payload) for m in plain.expect_n(n)) == list(range(n))
    assert sorted(int(m.payload) for m in other_group.expect_n(n)) == list(range(n))
    per_member = [_drain(m, 0.3) for m in members]
    counts = [len(x) for x in per_member]
    assert sorted(int(m.payload) for x in per_member for m in x) == list(range(n)), counts
    assert all(c >= n // 6 for c in counts), f"unbalanced shared subscription: {counts}"
    for x in per_member:
        assert all(m.topic == f"{base}/t" for m in x)


def test_shared_subscription_member_leaves(any_broker, connected):
    base = topic_base()
    a = connected(any_broker)
    b = connected(any_broker)
    a.subscribe(f"$share/g/{base}/t", qos=1)
    b.subscribe(f"$share/g/{base}/t", qos=1)
    b.unsubscribe(f"$share/g/{base}/t")
    pub = connected(any_broker)
    for i in range(6):
        pub.publish(f"{base}/t", str(i).encode(), qos=1)
    assert [m.payload for m in a.expect_n(6)] == [str(i).encode() for i in range(6)]
    b.expect_none(0.3)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_unsubscribe(any_broker, connected, protocol):
    base = topic_base()
    sub = connected(any_broker, protocol=protocol)
    sub.subscribe(f"{base}/a", qos=1)
    sub.subscribe(f"{base}/b", qos=1)
    pub = connected(any_broker)
    pub.publish(f"{base}/a", b"1", qos=1)
    assert sub.expect().payload == b"1"
    rcs = sub.unsubscribe(f"{base}/a")
    if protocol == V5:
        assert [int(r.value) for r in rcs] == [0]
    pub.publish(f"{base}/a", b"2", qos=1)
    pub.publish(f"{base}/b", b"3", qos=1)
    m = sub.expect()
    assert (m.topic, m.payload) == (f"{base}/b", b"3")
    sub.expect_none()


def test_v5_unsubscribe_unknown_filter_reason(any_broker, connected):
    sub = connected(any_broker, protocol=V5)
    rcs = sub.unsubscribe(topic_base() + "/never")
    assert [int(r.value) for r in rcs] == [0x11], "No subscription existed"


def test_v5_suback_reason_codes_are_granted_qos(any_broker, connected):
    base = topic_base()
    sub = connected(any_broker, protocol=V5)
    assert sub.subscribe([(f"{base}/0", 0), (f"{base}/1", 1), (f"{base}/2", 2)]) == [0, 1, 2]


@pytest.mark.parametrize("filt", ["a/#/b", "a/b#", "a+/b", ""], ids=["hash-mid", "hash-glued", "plus-glued", "empty"])
@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_invalid_filter_refused(any_broker, filt, version):
    """An invalid filter gets SUBACK 0x80 (v5: 0x8F), or the connection is closed (v5: DISCONNECT first)."""
    c = raw.RawClient(any_broker.port, version=version)
    assert c.connect(uid("badf")).return_code == 0
    c.send(raw.subscribe(3, [(filt, 1)], version=version))
    p = c.recv()
    if p is not None and p.type == raw.SUBACK:
        assert p.body[-1] == (0x8F if version == 5 else 0x80)
    elif p is not None:
        assert p.type == raw.DISCONNECT and version == 5
        assert p.reason in (0x81, 0x82, 0x8F)
        assert c.wait_closed() == []
    c.close()


def test_v311_resubscribe_replaces_and_resends_retained(any_broker, connected):
    base = topic_base()
    connected(any_broker).publish(f"{base}/r", b"kept", qos=2, retain=True)
    sub = connected(any_broker, protocol=V311)
    sub.subscribe(f"{base}/r", qos=0)
    m = sub.expect()
    assert (m.payload, m.qos, m.retain) == (b"kept", 0, True)
    assert sub.subscribe(f"{base}/r", qos=2) == [2]
    m = sub.expect()
    assert (m.payload, m.qos, m.retain) == (b"kept", 2, True)
    sub.expect_none()
    connected(any_broker).publish(f"{base}/r", b"live", qos=2)
    m = sub.expect()
    assert (m.payload, m.qos) == (b"live", 2)
    sub.expect_none()


def test_unsubscribe_matches_filter_exactly(any_broker, connected):
    base = topic_base()
    sub = connected(any_broker)
    sub.subscribe(f"{base}/a", qos=1)
    sub.unsubscribe(f"{base}/+")  # not a subscription of ours: removes nothing
    connected(any_broker).publish(f"{base}/a", b"still", qos=1)
    assert sub.expect().payload == b"still"


def test_unicode_and_odd_topics(any_broker, connected):
    base = topic_base()
    topics = [f"{base}/café/ünï code", f"{base}/with space", f"{base}/emoji/🎄", f"{base}/x/"]
    sub = connected(any_broker)
    sub.subscribe(f"{base}/#", qos=1)
    pub = connected(any_broker, protocol=V311)
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    got = [(m.topic, m.payload) for m in sub.expect_n(len(topics))]
    assert got == [(t, t.encode()) for t in topics]


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_publish_to_wildcard_topic_refused(any_broker, connected, version):
    watcher = connected(any_broker)
    watcher.subscribe("#", qos=0)
    c = raw.RawClient(any_broker.port, version=version)
    assert c.connect(uid("wild")).return_code == 0
    c.send(raw.publish("a/+/b", b"bad", qos=0, version=version))
    seen = c.wait_closed()
    if version == 5:
        assert [p.type for p in seen] == [raw.DISCONNECT]
        assert seen[0].reason in (0x81, 0x82, 0x90)
    else:
        assert seen == []
    c.close()
    watcher.expect_none()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_many_filters_in_one_subscribe_and_unsubscribe(any_broker, connected, protocol):
    base = topic_base()
    sub = connected(any_broker, protocol=protocol)
    filters = [(f"{base}/f{i}", i % 3) for i in range(60)]
    assert sub.subscribe(filters) == [i % 3 for i in range(60)]
    pub = connected(any_broker)
    pub.publish(f"{base}/f59", b"last", qos=2)
    m = sub.expect()
    assert (m.topic, m.qos) == (f"{base}/f59", 2)
    rcs = sub.unsubscribe([f for f, _ in filters[:30]] + [f"{base}/never"])
    if protocol == V5:
        assert [int(r.value) for r in rcs] == [0] * 30 + [0x11]
    pub.publish(f"{base}/f0", b"gone", qos=1)
    pub.publish(f"{base}/f30", b"kept", qos=1)
    m = sub.expect()
    assert (m.topic, m.payload) == (f"{base}/f30", b"kept")
    sub.expect_none()

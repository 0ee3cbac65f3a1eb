"""Retained messages: stored, replaced, deleted, delivered on subscribe with the retain flag, expiry."""

import time

import pytest

from brokertest import V5, V311, prop, props, topic_base


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_retained_stored_replaced_deleted(any_broker, connected, protocol):
    t = topic_base() + "/ret"
    pub = connected(any_broker, protocol=protocol)
    pub.publish(t, b"first", qos=1, retain=True)

    s1 = connected(any_broker, protocol=protocol)
    s1.subscribe(t, qos=1)
    m = s1.expect()
    assert (m.topic, m.payload, m.qos, m.retain) == (t, b"first", 1, True)
    s1.expect_none(0.3)

    # Replaced: the live copy to an existing subscriber has retain 0.
    pub.publish(t, b"second", qos=1, retain=True)
    m = s1.expect()
    assert (m.payload, m.retain) == (b"second", False)
    s2 = connected(any_broker, protocol=protocol)
    s2.subscribe(t, qos=1)
    m = s2.expect()
    assert (m.payload, m.retain) == (b"second", True)
    s2.expect_none(0.3)

    # Deleted by an empty retained payload (still forwarded to current subscribers).
    pub.publish(t, b"", qos=1, retain=True)
    m = s1.expect()
    assert m.payload == b""
    s3 = connected(any_broker, protocol=protocol)
    s3.subscribe(t, qos=1)
    s3.expect_none()


def test_retained_qos_is_min_of_stored_and_granted(any_broker, connected):
    base = topic_base()
    pub = connected(any_broker)
    pub.publish(f"{base}/a", b"A2", qos=2, retain=True)
    pub.publish(f"{base}/b", b"B1", qos=1, retain=True)
    pub.publish(f"{base}/c", b"C0", qos=0, retain=True)
    sub = connected(any_broker)
    sub.subscribe(f"{base}/+", qos=1)
    got = {m.topic: (m.payload, m.qos, m.retain) for m in sub.expect_n(3)}
    assert got == {
        f"{base}/a": (b"A2", 1, True),
        f"{base}/b": (b"B1", 1, True),
        f"{base}/c": (b"C0", 0, True),
    }
    sub.expect_none()


def test_retained_matched_by_wildcards(any_broker, connected):
    base = topic_base()
    pub = connected(any_broker)
    for t in ("x/1", "x/2", "x/2/deep", "y/1"):
        pub.publish(f"{base}/{t}", t.encode(), qos=1, retain=True)
    sub = connected(any_broker)
    sub.subscribe(f"{base}/x/#", qos=1)
    got = sorted(m.payload for m in sub.expect_n(3))
    assert got == [b"x/1", b"x/2", b"x/2/deep"]
    sub.expect_none()
    sub2 = connected(any_broker)
    sub2.subscribe(f"{base}/+/1", qos=1)
    assert sorted(m.payload for m in sub2.expect_n(2)) == [b"x/1", b"y/1"]
    sub2.expect_none()


def test_retained_not_sent_again_for_live_publish_and_only_once(any_broker, connected):
    t = topic_base() + "/once"
    pub = connected(any_broker)
    pub.publish(t, b"r", qos=1, retain=True)
    sub = connected(any_broker, protocol=V311)
    sub.subscribe(t, qos=1)
    assert sub.expect().retain is True
    # A plain (non-retained) publish does not replace the retained one.
    pub.publish(t, b"live", qos=1, retain=False)
    m = sub.expect()
    assert (m.payload, m.retain) == (b"live", False)
    late = connected(any_broker)
    late.subscribe(t, qos=1)
    m = late.expect()
    assert (m.payload, m.retain) == (b"r", True)
    late.expect_none()


def test_v5_retained_message_expiry(any_broker, connected):
    base = topic_base()
    pub = connected(any_broker, protocol=V5)
    pub.publish(f"{base}/short", b"short", qos=1, retain=True, properties=props(MessageExpiryInterval=1))
    pub.publish(f"{base}/long", b"long", qos=1, retain=True, properties=props(MessageExpiryInterval=100))
    early = connected(any_broker, protocol=V5)
    early.subscribe(f"{base}/+", qos=1)
    got = {m.topic: m for m in early.expect_n(2)}
    assert got[f"{base}/short"].payload == b"short"
    assert prop(got[f"{base}/short"], "MessageExpiryInterval") in (0, 1)
    assert 98 <= prop(got[f"{base}/long"], "MessageExpiryInterval") <= 100
    time.sleep(2.2)
    late = connected(any_broker, protocol=V5)
    late.subscribe(f"{base}/+", qos=1)
    m = late.expect()
    assert (m.topic, m.payload, m.retain) == (f"{base}/long", b"long", True)
    assert 95 <= prop(m, "MessageExpiryInterval") <= 98
    late.expect_none()

"""`$SYS/broker/...` topics, published every `sys_interval` (1 second here)."""

import re
import time

from brokertest import topic_base

REQUIRED = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
]


def _collect(peer, until, timeout=4.0):
    """Read $SYS messages into a dict (latest value per topic) until `until(values)` or timeout."""
    values = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = peer.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        values[m.topic] = m.payload.decode()
        if until(values):
            return values
    missing = [t for t in REQUIRED if t not in values]
    raise AssertionError(f"condition not met in {timeout}s; missing={missing}; values={values}")


def test_sys_topics_published(broker_factory, connected):
    server = broker_factory(sys_interval=1)
    watcher = connected(server)
    watcher.subscribe("$SYS/broker/#", qos=0)
    # Values are retained: the first ones may predate our subscription; wait for an update.
    values = _collect(
        watcher,
        lambda v: all(t in v for t in REQUIRED)
        and v["$SYS/broker/clients/connected"] != "0"
        and v["$SYS/broker/subscriptions/count"] != "0",
    )
    assert values["$SYS/broker/version"].strip()
    assert re.fullmatch(r"\d+ seconds", values["$SYS/broker/uptime"]), values["$SYS/broker/uptime"]
    for t in REQUIRED[2:]:
        assert re.fullmatch(r"\d+", values[t]), (t, values[t])
    assert int(values["$SYS/broker/clients/connected"]) >= 1
    assert int(values["$SYS/broker/subscriptions/count"]) >= 1


def test_sys_counters_move(broker_factory, connected):
    server = broker_factory(sys_interval=1)
    watcher = connected(server)
    watcher.subscribe("$SYS/broker/#", qos=0)
    first = _collect(watcher, lambda v: all(t in v for t in REQUIRED))
    before_recv = int(first["$SYS/broker/messages/received"])
    before_conn = int(first["$SYS/broker/clients/connected"])
    before_up = int(first["$SYS/broker/uptime"].split()[0])
    base = topic_base()
    extra = [connected(server) for _ in range(2)]
    retained_before = int(first["$SYS/broker/retained messages/count"])
    for i in range(5):
        extra[0].publish(f"{base}/{i}", b"x", qos=1, retain=(i == 0))
    _collect(
        watcher,
        lambda v: int(v.get("$SYS/broker/messages/received", 0)) >= before_recv + 5
        and int(v.get("$SYS/broker/clients/connected", 0)) >= before_conn + 2
        and int(v.get("$SYS/broker/retained messages/count", 0)) >= retained_before + 1
        and int(v.get("$SYS/broker/uptime", "0 seconds").split()[0]) > before_up,
        timeout=4.0,
    )


def test_sys_retained_version(broker_factory, connected):
    server = broker_factory(sys_interval=1)
    late = connected(server)
    late.subscribe("$SYS/broker/version", qos=0)
    m = late.expect(timeout=3)
    assert m.retain is True
    assert m.payload.strip()


def test_hash_does_not_receive_sys(broker_factory, connected):
    server = broker_factory(sys_interval=1)
    sub = connected(server)
    sub.subscribe("#", qos=0)
    sub.expect_none(1.5)


def test_sys_counts_exact(broker_factory, connected, peers):
    server = broker_factory(sys_interval=1)
    watcher = connected(server)
    watcher.subscribe("$SYS/broker/#", qos=0)
    C, S, R = "$SYS/broker/clients/connected", "$SYS/broker/subscriptions/count", "$SYS/broker/retained messages/count"
    first = _collect(watcher, lambda v: v.get(C) == "1" and v.get(S) == "1" and R in v)
    retained0 = int(first[R])
    base = topic_base()
    a = connected(server)
    a.subscribe(f"{base}/x", qos=1)
    a.subscribe(f"{base}/y/#", qos=0)
    b = connected(server)
    b.publish(f"{base}/r1", b"1", qos=1, retain=True)
    b.publish(f"{base}/r2", b"2", qos=1, retain=True)
    # (the retained count includes the broker's own $SYS topics, which may grow: compare deltas)
    _collect(watcher, lambda v: v.get(C) == "3" and v.get(S) == "3" and int(v.get(R, 0)) >= retained0 + 2)
    a.disconnect()
    b.publish(f"{base}/r1", b"", qos=1, retain=True)
    _collect(watcher, lambda v: v.get(C) == "2" and v.get(S) == "1")

"""Per-listener settings, each run on Mosquitto and on tinsel with the same mosquitto.conf:
`max_connections` (counted per listener, refused on accept), `mount_point` (topics prefixed on the
way in, stripped on the way out, nothing outside reaches the client), `max_topic_alias`; and the
MQTT versions a listener accepts (tinsel only: `accept_protocol_versions` is Mosquitto 2.1's, the
Mosquitto under test is 2.0).
"""

import re
import subprocess
import time
import urllib.request
from types import SimpleNamespace

import pytest

import rawmqtt as raw
from brokertest import MOSQUITTO_EXE, V5, V311, WAIT, free_port_number, prop, uid

KINDS = ["tinsel", "mosquitto"]


def attempt(port, client_id, version=4):
    """A raw CONNECT: (client, first packet back), the packet None if the broker closed first."""
    c = raw.RawClient(port, version)
    try:
        c.send(raw.connect(client_id, version))
        return c, c.recv(timeout=WAIT)
    except OSError:
        return c, None


def admitted(port, client_id, version=4):
    """Connects until a CONNACK 0 comes back (bounded by WAIT): the open connection."""
    deadline = time.monotonic() + WAIT
    while True:
        c, p = attempt(port, client_id, version)
        if p is not None:
            assert p.type == raw.CONNACK and p.return_code == 0, p
            return c
        c.close()
        assert time.monotonic() < deadline, f"{client_id}: never admitted on {port}"
        time.sleep(0.05)


def metric(http_port, line_start):
    body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=WAIT).read().decode()
    lines = [ln for ln in body.splitlines() if ln.startswith(line_start)]
    assert len(lines) == 1, body
    return int(lines[0].rsplit(" ", 1)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_max_connections_is_counted_per_listener(kind, conf_broker):
    capped, free = free_port_number(), free_port_number()
    http = free_port_number()
    conf = f"allow_anonymous true\nlistener {capped} 127.0.0.1\nmax_connections 2\nlistener {free} 127.0.0.1\n"
    # Only the other port is probed for readiness: Mosquitto 2.0.11 counts a connection that
    # closes twice down (fixed in 2.0.12), so a probe would raise its cap.
    conf_broker(kind, conf, [free], extra=("--http", f"127.0.0.1:{http}"))
    held = [admitted(capped, uid("a")), admitted(capped, uid("b"))]
    # The third is closed right after accept: no CONNACK.
    extra, p = attempt(capped, uid("c"))
    assert p is None, p
    extra.close()
    # The other listener has its own count.
    others = [admitted(free, uid("f")) for _ in range(3)]
    # A place freed on the capped listener is taken again.
    held.pop().close()
    held.append(admitted(capped, uid("d")))
    if kind == "tinsel":
        refused = 'tinsel_connections_refused_total{reason="listener_max_connections"}'
        assert metric(http, refused) >= 1
        assert metric(http, 'tinsel_connections_refused_total{reason="max_connections"}') == 0
    for c in held + others:
        c.close()


def mosquitto_version():
    out = subprocess.run([MOSQUITTO_EXE, "-h"], capture_output=True, text=True, timeout=WAIT).stdout
    return tuple(int(x) for x in re.search(r"version (\d+)\.(\d+)\.(\d+)", out).groups())


@pytest.mark.parametrize("kind", KINDS)
def test_mount_point_prefixes_in_and_strips_out(kind, conf_broker, peers):
    mounted, plain = free_port_number(), free_port_number()
    conf = f"allow_anonymous true\nlistener {mounted} 127.0.0.1\nmount_point tenant/\nlistener {plain} 127.0.0.1\n"
    conf_broker(kind, conf, [mounted, plain])
    # Mosquitto before 2.0.12 forgot to strip the mount point on the way out (its ChangeLog:
    # "Fix listener mount_point not being removed on outgoing messages"); tinsel strips it.
    strips = kind == "tinsel" or mosquitto_version() >= (2, 0, 12)

    def inside_topic(t):
        return t if strips else "tenant/" + t

    at = SimpleNamespace
    outside = peers(at(port=plain), protocol=V311)
    outside.connect()
    outside.publish("tenant/r", b"R", qos=1, retain=True)
    inside = peers(at(port=mounted), protocol=V5)
    inside.connect()
    inside.subscribe("#", qos=1)
    m = inside.expect()
    assert (m.topic, m.payload, m.retain) == (inside_topic("r"), b"R", True)
    outside.subscribe("#", qos=1)
    assert outside.expect().topic == "tenant/r"

    inside.publish("a/b", b"in", qos=1)
    assert outside.expect().topic == "tenant/a/b"
    assert inside.expect().topic == inside_topic("a/b")
    # Outside the mount point: never seen inside.
    outside.publish("elsewhere", b"x", qos=1)
    assert outside.expect().topic == "elsewhere"
    outside.publish("tenant/c", b"y", qos=0)
    assert outside.expect().topic == "tenant/c"
    m = inside.expect()
    assert (m.topic, m.payload) == (inside_topic("c"), b"y")
    inside.subscribe("$SYS/#")
    inside.expect_none()

    # A will is published under the mount point too.
    leaver = peers(at(port=mounted), protocol=V311)
    leaver.c.will_set("gone", b"bye", qos=1)
    leaver.connect()
    leaver.drop()
    m = outside.expect()
    assert (m.topic, m.payload) == ("tenant/gone", b"bye")


@pytest.mark.parametrize("kind", KINDS)
def test_max_topic_alias_per_listener(kind, conf_broker, peers):
    small, default = free_port_number(), free_port_number()
    conf = f"allow_anonymous true\nlistener {small} 127.0.0.1\nmax_topic_alias 2\nlistener {default} 127.0.0.1\n"
    conf_broker(kind, conf, [small, default])
    at = SimpleNamespace
    _, _, p = peers(at(port=small), protocol=V5).connect()
    assert prop(p, "TopicAliasMaximum") == 2
    _, _, p = peers(at(port=default), protocol=V5).connect()
    assert prop(p, "TopicAliasMaximum") == 10
    # An alias above the listener's maximum: DISCONNECT 0x94 Topic Alias invalid.
    c = raw.RawClient(small, version=5)
    assert c.connect(uid()).return_code == 0
    c.send(raw.publish("t", b"x", version=5, pub_props=raw.props((0x23, raw.u16(3)))))
    seen = c.wait_closed()
    assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x94)], seen
    c.close()


def test_protocol_versions_per_listener(start_tinsel, conf_broker):
    v3_only = free_port_number()
    config = f"""
[[listeners]]
address = "127.0.0.1"
port = {{port}}
protocols = ["5.0"]

[[listeners]]
address = "127.0.0.1"
port = {v3_only}
protocols = ["3.1", "3.1.1"]
"""
    v5_only = start_tinsel(config=config).port
    for port, version, want in [
        (v5_only, 4, 0x01),  # 3.1.1: return code 1, unacceptable protocol version
        (v5_only, 3, 0x01),
        (v5_only, 5, 0x00),
        (v3_only, 5, 0x84),  # 5.0: Unsupported Protocol Version
        (v3_only, 4, 0x00),
        (v3_only, 3, 0x00),
    ]:
        c, p = attempt(port, uid(), version)
        assert p is not None and p.type == raw.CONNACK, (port, version, p)
        assert p.return_code == want, (port, version, p)
        if want:
            assert c.wait_closed() == []
        c.close()
    # The same from mosquitto.conf, with Mosquitto 2.1's accept_protocol_versions.
    port = free_port_number()
    conf = f"listener {port} 127.0.0.1\nallow_anonymous true\naccept_protocol_versions 5\n"
    conf_broker("tinsel", conf, [port])
    c, p = attempt(port, uid(), 4)
    assert p is not None and p.return_code == 0x01, p
    c.close()

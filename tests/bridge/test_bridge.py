"""Bridges between real brokers: Tinsel to Mosquitto, Mosquitto to Tinsel, Tinsel to Tinsel.

The bridging broker reads the same `connection` lines from mosquitto.conf (Tinsel and
Mosquitto side by side) or, for Tinsel, from TOML. Every wait is bounded; the only fixed
wait is QUIET, the time copies made by a loop would take to show.
"""

import subprocess
import time
from pathlib import Path

import pytest

from conftest import QUIET, WAIT, toml_bridge, uid

ROOT = Path(__file__).resolve().parents[2]
STATE = "$SYS/broker/connection/{}/state"


def bridge_lines(remote, client_id, *topics, extra=()):
    return [
        "connection hq",
        f"address 127.0.0.1:{remote.port}",
        f"remote_clientid {client_id}",
        "restart_timeout 1",
        *extra,
        *(f"topic {t}" for t in topics),
    ]


@pytest.mark.parametrize("local_kind", ["tinsel-conf", "tinsel-toml", "mosquitto"])
def test_messages_cross_renamed_by_the_prefixes_and_the_state_is_published(brokers, local_kind):
    remote = brokers.mosquitto()
    cid = uid("site")
    local = brokers.bridging(
        local_kind,
        bridge_lines(remote, cid, "out/# out 1 local/ remote/", "cmd/# in 1 here/ there/"),
    )
    far = brokers.collector(remote, "remote/#", "local/#", STATE.format(cid))
    near = brokers.collector(local, "here/#", "there/#", STATE.format(cid))
    # The bridge is up: its state is `1` on both brokers, retained.
    far.wait_topic(STATE.format(cid), b"1")
    near.wait_topic(STATE.format(cid), b"1")

    # The remote subscription may be a moment behind the state: repeat until it is there.
    sender = brokers.collector(remote)
    deadline = time.monotonic() + WAIT
    while not near.got("here/cmd/y") and time.monotonic() < deadline:
        sender.publish("there/cmd/y", b"in", qos=1)
        time.sleep(0.1)
    assert near.got("here/cmd/y"), "nothing came in"
    assert not near.got("there/cmd/y")

    near.publish("local/out/x", b"out", qos=1)
    near.publish("unbridged/z", b"stays", qos=1)
    far.wait_topic("remote/out/x", b"out")
    assert not far.got("local/out/x")
    # Outside the bridge's topics nothing crosses (the marker comes after on the same path).
    near.publish("local/out/end", b"end", qos=1)
    far.wait_topic("remote/out/end")
    assert not [m for m in far.got() if b"stays" in m[1]]


# (bridging broker, remote broker, bridge protocol): every pair of Tinsel and Mosquitto,
# MQTT 3.1.1 with the bridge bit (try_private) and MQTT 5 with No Local.
LOOP_CASES = [
    ("tinsel-conf", "mosquitto", "mqttv311"),
    ("tinsel-toml", "tinsel", "mqttv311"),
    ("tinsel-conf", "tinsel", "mqttv50"),
    ("tinsel-conf", "mosquitto", "mqttv50"),
    ("mosquitto", "tinsel", "mqttv311"),
    ("mosquitto", "mosquitto", "mqttv311"),
]


@pytest.mark.parametrize("local_kind,remote_kind,protocol", LOOP_CASES)
def test_a_both_ways_bridge_makes_no_loop(brokers, local_kind, remote_kind, protocol):
    remote = brokers.plain(remote_kind)
    cid = uid("loop")
    local = brokers.bridging(
        local_kind,
        bridge_lines(remote, cid, "loop/# both 1", extra=[f"bridge_protocol_version {protocol}"]),
    )
    far = brokers.collector(remote, "loop/#", STATE.format(cid))
    near = brokers.collector(local, "loop/#")
    far.wait_topic(STATE.format(cid), b"1")
    # Wait until the remote subscription is in place: a probe from the remote arrives here.
    deadline = time.monotonic() + WAIT
    while not near.got("loop/probe") and time.monotonic() < deadline:
        far.publish("loop/probe", b"p", qos=1)
        time.sleep(0.1)
    assert near.got("loop/probe"), "the bridge carries nothing in"

    near.publish("loop/from-local", b"L", qos=1)
    far.publish("loop/from-remote", b"R", qos=1)
    for c in (near, far):
        c.wait_topic("loop/from-local")
        c.wait_topic("loop/from-remote")
    time.sleep(QUIET)  # a loop would have sent copies round by now
    for name, c in (("local", near), ("remote", far)):
        for topic in ("loop/from-local", "loop/from-remote"):
            assert len(c.got(topic)) == 1, f"{name} got {topic} {len(c.got(topic))} times"


def mosquitto_persistent(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    # `user root`: run as root, Mosquitto would drop to its own user, which cannot write in
    # pytest's private temporary directory (ignored when not run as root).
    return f"user root\npersistence true\npersistence_location {d}/\n"


@pytest.mark.parametrize("local_kind", ["tinsel-conf", "tinsel-toml"])
def test_remote_restart_mid_stream_loses_no_qos1_going_out(brokers, tmp_path, local_kind):
    remote = brokers.mosquitto(mosquitto_persistent(tmp_path, "remote"))
    cid = uid("out")
    local = brokers.bridging(
        local_kind, bridge_lines(remote, cid, "data/# out 1", extra=["cleansession false"])
    )
    # A persistent subscriber on the remote: what it misses while the remote is down is kept.
    far = brokers.collector(remote, "data/#", STATE.format(cid), client_id=uid("far"), clean=False)
    far.wait_topic(STATE.format(cid), b"1")
    near = brokers.collector(local)
    n = 100  # within the bridge's bounds: in flight (20) plus its session's queue (1000)

    for i in range(n // 2):
        near.publish(f"data/{i}", str(i).encode(), qos=1)

    def while_down():
        # The bridge holds these (unacknowledged here) until the remote is back.
        for i in range(n // 2, n):
            near.publish(f"data/{i}", str(i).encode(), qos=1)

    brokers.restart(remote, while_down)
    want = {str(i).encode() for i in range(n)}
    far.wait_for(lambda ms: want <= {p for t, p, _ in ms if t.startswith("data/")}, f"all {n}", timeout=30)


@pytest.mark.parametrize("local_store", ["memory", "persistent"])
def test_remote_restart_mid_stream_loses_no_qos1_or_2_coming_in(brokers, tmp_path, local_store):
    remote = brokers.mosquitto(mosquitto_persistent(tmp_path, "remote"))
    cid = uid("in")
    # Persistent: Tinsel's store in sync mode holds each acknowledgement to the bridge until
    # it is on disk, and the bridge keeps within the Receive Maximum meanwhile.
    store = ""
    if local_store == "persistent":
        (tmp_path / "local").mkdir()
        store = f"persistence true\npersistence_location {tmp_path / 'local'}/\n"
    local = brokers.bridging(
        "tinsel-conf",
        bridge_lines(remote, cid, "data/# in 2", extra=["cleansession false"]),
        extra=store,
    )
    near = brokers.collector(local, "data/#")
    far = brokers.collector(remote, STATE.format(cid))
    far.wait_topic(STATE.format(cid), b"1")
    n = 100
    deadline = time.monotonic() + WAIT
    while not near.got("data/probe") and time.monotonic() < deadline:
        far.publish("data/probe", b"p", qos=1)
        time.sleep(0.1)
    assert near.got("data/probe")
    for i in range(n // 2):
        far.publish(f"data/{i}", str(i).encode(), qos=1)
    far.close()
    # The remote restarts before the bridge has necessarily taken everything; the rest is
    # published while the bridge is still reconnecting (restart_timeout 1): the remote
    # keeps it for the bridge's persistent session.
    remote = brokers.restart(remote)
    pub = brokers.collector(remote)
    for i in range(n // 2, n):  # at QoS 2: the bridge's subscription is QoS 2
        pub.publish(f"data/{i}", str(i).encode(), qos=2)
    want = {str(i).encode() for i in range(n)}
    near.wait_for(lambda ms: want <= {p for t, p, _ in ms}, f"all {n}", timeout=30)


def test_fail_over_to_the_second_address(brokers, free_port):
    remote = brokers.mosquitto()
    cid = uid("fo")
    dead = free_port  # nothing listens there
    lines = [
        "connection hq",
        f"address 127.0.0.1:{dead} 127.0.0.1:{remote.port}",
        f"remote_clientid {cid}",
        "restart_timeout 1",
        "topic f/# out 1",
    ]
    local = brokers.tinsel_conf("\n".join(lines))
    far = brokers.collector(remote, "f/#", STATE.format(cid))
    far.wait_topic(STATE.format(cid), b"1")
    sender = brokers.collector(local)
    sender.publish("f/x", b"over", qos=1)
    far.wait_topic("f/x", b"over")
    assert f"127.0.0.1:{dead}" in local.log()
    # With round_robin false (the default), the bridge goes back to the first address once
    # it answers again.
    first = brokers.mosquitto(port=dead)
    back = brokers.collector(first, "f/#")
    deadline = time.monotonic() + WAIT
    while not back.got("f/y") and time.monotonic() < deadline:
        sender.publish("f/y", b"back", qos=1)
        time.sleep(0.2)
    assert back.got("f/y"), "the bridge did not go back to the first address"


def test_tls_to_the_remote_with_bridge_cafile(brokers, tmp_path):
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(ROOT / "tests/broker/make-certs.sh"), str(certs)], check=True)
    remote = brokers.mosquitto(
        # `user root`: see mosquitto_persistent.
        f"user root\ncafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
    )
    good, bad = uid("tls"), uid("untrusted")

    def bridge(name, cid, ca):
        return [
            f"connection {name}",
            f"address 127.0.0.1:{remote.port}",
            f"remote_clientid {cid}",
            "restart_timeout 1",
            f"bridge_cafile {ca}",
            "topic s/# out 1",
        ]

    local = brokers.tinsel_toml(
        toml_bridge(bridge("good", good, certs / "ca.crt"))
        + toml_bridge(bridge("bad", bad, certs / "foreign-ca.crt"))
    )
    near = brokers.collector(local, STATE.format(good), STATE.format(bad))
    near.wait_topic(STATE.format(good), b"1")
    brokers.collector(local).publish("s/1", b"secret", qos=1)
    # Read on the remote over TLS, with Mosquitto's own client.
    out = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(remote.port), "--cafile", f"{certs}/ca.crt",
         "-t", STATE.format(good), "-t", STATE.format(bad), "-v", "-W", "2"],
        capture_output=True, text=True, timeout=10,
    )
    assert f"{STATE.format(good)} 1" in out.stdout
    # The bridge that does not trust the remote's certificate never connects.
    deadline = time.monotonic() + WAIT
    while "bridge bad" not in local.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "certificate" in local.log().lower()
    assert near.got(STATE.format(bad)) and all(p == b"0" for _, p, _ in near.got(STATE.format(bad)))
    assert STATE.format(bad) not in out.stdout


@pytest.mark.parametrize(
    "line,part",
    [
        ("topic # sideways 1", "out, in or both"),
        ("topic # out 3", "0, 1 or 2"),
        ("bridge_protocol_version mqttv6", "mqttv6"),
        ("address 127.0.0.1:0", "invalid port"),
        ("start_type lazy", "not supported yet"),
    ],
)
def test_configuration_mistakes_name_the_file_and_line(tinsel_bin, tmp_path, line, part):
    conf = tmp_path / "bridge.conf"
    conf.write_text(f"listener 1883\nconnection hq\naddress 127.0.0.1:1883\n{line}\n")
    r = subprocess.run([str(tinsel_bin), "broker", "--check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{conf}:4:" in r.stderr and part in r.stderr, r.stderr

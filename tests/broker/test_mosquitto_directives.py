"""Mosquitto's broker-wide directives and per-listener access, each run on Mosquitto and on tinsel
with the same mosquitto.conf: `clientid_prefixes`, `auto_id_prefix`, `allow_zero_length_clientid`,
`retain_available`, `upgrade_outgoing_qos`, and `per_listener_settings true` with each listener's
own `allow_anonymous`, `password_file` and `acl_file`. Then `tinsel broker --check` on them.
"""

import os
import subprocess
from types import SimpleNamespace

import pytest

import rawmqtt as raw
from brokertest import V5, V311, free_port_number, prop, run_cli, uid

KINDS = ["tinsel", "mosquitto"]


def connack(port, client_id, version=4, **kw):
    """A raw CONNECT's answer: (CONNACK return/reason code or None if closed without one,
    packets seen until the broker closed, or [] while it stays open)."""
    c = raw.RawClient(port, version)
    try:
        c.send(raw.connect(client_id, version, **kw))
        p = c.recv()
        if p is None:
            return None, []
        assert p.type == raw.CONNACK, p
        rest = c.wait_closed() if p.return_code else []
        return p.return_code, rest
    finally:
        c.close()


def one_listener(conf_broker, kind, directives):
    port = free_port_number()
    conf_broker(kind, f"allow_anonymous true\n{directives}\nlistener {port} 127.0.0.1\n", [port])
    return port


@pytest.mark.parametrize("kind", KINDS)
def test_clientid_prefixes_and_auto_id_prefix(kind, conf_broker, peers):
    port = one_listener(conf_broker, kind, "clientid_prefixes dev-\nauto_id_prefix dev-auto-")
    assert connack(port, "dev-1") == (0, [])
    # Mosquitto refuses as "not authorized", not "identifier rejected".
    assert connack(port, "other", 4) == (5, [])
    assert connack(port, "other", 5) == (0x87, [])
    # An assigned id carries auto_id_prefix, and so passes the prefix check.
    p = peers(SimpleNamespace(port=port), client_id="", protocol=V5)
    _, rc, props = p.connect()
    assert prop(props, "AssignedClientIdentifier").startswith("dev-auto-")


@pytest.mark.parametrize("kind", KINDS)
def test_zero_length_client_ids_refused(kind, conf_broker):
    port = one_listener(conf_broker, kind, "allow_zero_length_clientid false")
    assert connack(port, "", 4) == (2, [])
    # MQTT 5: Mosquitto says 0x80 Unspecified error, tinsel 0x85 Client Identifier not valid
    # (a deliberate difference, in docs/configuration.md).
    assert connack(port, "", 5) == (0x85 if kind == "tinsel" else 0x80, [])
    assert connack(port, uid(), 5) == (0, [])


@pytest.mark.parametrize("kind", KINDS)
def test_retain_not_available(kind, conf_broker, peers):
    port = one_listener(conf_broker, kind, "retain_available false")
    _, _, props = peers(SimpleNamespace(port=port), protocol=V5).connect()
    assert prop(props, "RetainAvailable") == 0
    for version, seen in [(5, [(raw.DISCONNECT, 0x9A)]), (4, [])]:
        c = raw.RawClient(port, version)
        assert c.connect(uid()).return_code == 0
        c.send(raw.publish("t", b"kept?", retain=True, version=version))
        got = [(p.type, p.reason) for p in c.wait_closed()]
        assert got == seen, (version, got)
        c.close()
    # A retained will: MQTT 5 is told 0x9A, MQTT 3.1.1 is closed without a CONNACK.
    will = ("w", b"bye", 0, True)
    assert connack(port, uid(), 5, will=will) == (0x9A, [])
    assert connack(port, uid(), 4, will=will) == (None, [])
    # Without the retain flag all is as usual.
    p = peers(SimpleNamespace(port=port), protocol=V311)
    p.connect()
    p.subscribe("t", qos=1)
    p.publish("t", b"fine", qos=1)
    assert p.expect().payload == b"fine"


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_outgoing_qos(kind, conf_broker, peers):
    port = one_listener(conf_broker, kind, "upgrade_outgoing_qos true")
    at = SimpleNamespace(port=port)
    sub2 = peers(at, protocol=V311)
    sub2.connect()
    sub2.subscribe("t", qos=2)
    sub1 = peers(at, protocol=V5)
    sub1.connect()
    sub1.subscribe("t", qos=1)
    pub = peers(at, protocol=V311)
    pub.connect()
    pub.publish("t", b"q0", qos=0)
    assert sub2.expect().qos == 2
    assert sub1.expect().qos == 1


def mosquitto_passwd(path, user, password):
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True, timeout=10)


@pytest.mark.parametrize("kind", KINDS)
def test_per_listener_settings_each_listener_its_own_rules(kind, conf_broker, peers, tmp_path):
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    mosquitto_passwd(pw, "alice", "wonder")
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    open_, locked, bare = free_port_number(), free_port_number(), free_port_number()
    # Started as root, Mosquitto would become the `mosquitto` user, which cannot read pytest's
    # private tmp directory or the 0600 password file; `user` is read and ignored by tinsel.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = f"""{user}per_listener_settings true
listener {open_} 127.0.0.1
allow_anonymous true
listener {locked} 127.0.0.1
password_file {pw}
acl_file {acl}
listener {bare} 127.0.0.1
"""
    conf_broker(kind, conf, [open_, locked, bare])
    # Who may connect: each listener's own settings.
    assert connack(open_, uid()) == (0, [])
    assert connack(locked, uid()) == (5, [])
    assert connack(locked, uid(), user=("alice", "wrong")) == (5, [])
    assert connack(bare, uid()) == (5, []), "a listener with nothing set refuses anonymous clients"
    assert connack(open_, uid(), user=("alice", "wrong")) == (0, []), "no password file there"

    # What they may do: the locked listener's ACL, not on the open one.
    anon = peers(SimpleNamespace(port=open_), protocol=V311)
    anon.connect()
    anon.subscribe("#", qos=1)
    alice = peers(SimpleNamespace(port=locked), protocol=V311)
    alice.c.username_pw_set("alice", "wonder")
    alice.connect()
    alice.subscribe("#", qos=1)
    anon.publish("other/x", b"not for alice", qos=1)
    anon.publish("alice/x", b"for alice", qos=1)
    assert [m.topic for m in anon.expect_n(2)] == ["other/x", "alice/x"]
    m = alice.expect()
    assert (m.topic, m.payload) == ("alice/x", b"for alice")
    alice.expect_none()
    alice.publish("other/y", b"denied", qos=1)
    alice.publish("alice/y", b"allowed", qos=1)
    m = anon.expect()
    assert (m.topic, m.payload) == ("alice/y", b"allowed")
    anon.expect_none()


def test_check_prints_the_new_keys_and_reads_them_back(tinsel_bin, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text(
        "per_listener_settings true\nclientid_prefixes dev-\nauto_id_prefix dev-a-\n"
        "retain_available false\nupgrade_outgoing_qos true\n"
        "listener 1884 127.0.0.1\nmax_connections 2\nmount_point tenant/\nmax_topic_alias 3\n"
        "accept_protocol_versions 4,5\nallow_anonymous true\n"
    )
    out = run_cli([str(tinsel_bin), "broker", "--check", "-c", str(conf)])
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    for line in [
        "max_connections = 2",
        'protocols = ["3.1.1", "5.0"]',
        'mount_point = "tenant/"',
        "max_topic_alias = 3",
        "per_listener_settings = true",
        'clientid_prefixes = ["dev-"]',
        'auto_id_prefix = "dev-a-"',
        "retain_available = false",
        "upgrade_outgoing_qos = true",
    ]:
        assert line in text.splitlines(), (line, text)
    assert "warning" not in out.stderr.decode(), out.stderr
    # What --check prints is a TOML file that reads back to the same configuration.
    again = tmp_path / "effective.toml"
    again.write_text(text)
    out2 = run_cli([str(tinsel_bin), "broker", "--check", "-c", str(again)])
    assert out2.returncode == 0, out2.stderr
    assert out2.stdout.decode().split("\n", 1)[1] == text.split("\n", 1)[1]

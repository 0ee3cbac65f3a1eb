"""Tinsel-only behaviour: the `-c` TOML config (listeners, limits, sys_interval), `-v` packet logs,
the keep-alive cap enforcement, the CONNECT timeout, bounded offline queues, signals, default port."""

import os
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import rawmqtt as raw
from brokertest import V5, V311, Peer, free_port_number, prop, tinsel_config, topic_base, uid
from servers import wait_for_port


_config = tinsel_config


def test_config_two_listeners(start_tinsel, connected):
    second = free_port_number()
    srv = start_tinsel(config=_config("{port}") + f'\n[[listeners]]\naddress = "127.0.0.1"\nport = {second}\n')
    t = topic_base() + "/two"

    class Second:
        port = second

    sub = connected(Second, protocol=V311)
    sub.subscribe(t, qos=1)
    pub = connected(srv, protocol=V5)
    pub.publish(t, b"across-listeners", qos=1)
    assert sub.expect().payload == b"across-listeners"


def test_config_limits_announced_in_connack(start_tinsel):
    srv = start_tinsel(
        config=_config(
            "{port}",
            "[limits]\nmax_inflight = 7\ntopic_alias_maximum = 3\nmax_packet_size = 4096\n",
        )
    )
    c = raw.RawClient(srv.port, version=5)
    c.send(raw.connect(uid("lim"), version=5))
    ack = c.expect(raw.CONNACK)
    assert ack.return_code == 0
    fields = _connack_props(ack)
    assert fields.get(0x21) == 7, fields  # Receive Maximum
    assert fields.get(0x22) == 3, fields  # Topic Alias Maximum
    assert fields.get(0x27) == 4096, fields  # Maximum Packet Size
    c.close()


def _connack_props(ack):
    body = ack.body
    plen, n = raw.read_varint(body, 2)
    pos, end = 2 + n, 2 + n + plen
    out = {}
    while pos < end:
        ident = body[pos]
        pos += 1
        if ident in (0x21, 0x22, 0x13):
            out[ident] = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
        elif ident in (0x11, 0x27):
            out[ident] = int.from_bytes(body[pos : pos + 4], "big")
            pos += 4
        elif ident in (0x24, 0x25, 0x28, 0x29, 0x2A):
            out[ident] = body[pos]
            pos += 1
        elif ident == 0x26:
            k = int.from_bytes(body[pos : pos + 2], "big")
            v = int.from_bytes(body[pos + 2 + k : pos + 4 + k], "big")
            pos += 4 + k + v
        else:  # strings and binary data
            ln = int.from_bytes(body[pos : pos + 2], "big")
            out[ident] = body[pos + 2 : pos + 2 + ln]
            pos += 2 + ln
    return out


def test_receive_maximum_from_config_enforced(start_tinsel):
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_inflight = 3\n"))
    c = raw.RawClient(srv.port, version=5)
    assert c.connect(uid("rm")).return_code == 0
    for pid in range(1, 5):
        c.send(raw.publish("rm/x", b"p", qos=2, pid=pid, version=5))
    seen = c.wait_closed()
    assert [p.type for p in seen] == [raw.PUBREC] * 3 + [raw.DISCONNECT]
    assert seen[-1].reason == 0x93
    c.close()


def test_paho_burst_beyond_receive_maximum_reads_0x93(start_tinsel, peers):
    """paho bursts QoS 2 far beyond Receive Maximum and is still writing when tinsel closes the
    connection: it must read the DISCONNECT 0x93 (no reset that fails its next write before it
    has read it, or discards it unread). Tinsel-only: Mosquitto answers PUBREC 0x97 and keeps
    the connection (see test_v5)."""
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_inflight = 10\n"))
    p = peers(srv, protocol=V5)
    # No in-flight limit of paho's own (it does not keep to the broker's either).
    p.c.max_inflight_messages_set(0)
    _, _, cprops = p.connect()
    assert prop(cprops, "ReceiveMaximum") == 10
    t = topic_base() + "/burst"
    # Queued while paho's network thread waits, then written in one go: paho is still
    # writing (2 MB) when the broker closes the connection.
    p.pause()
    time.sleep(0.1)  # a loop() in progress finishes
    for _ in range(2000):
        assert p.c.publish(t, b"q" * 1000, qos=2).rc == mqtt.MQTT_ERR_SUCCESS
    p.resume()
    rc, _ = p.expect_disconnect()
    assert rc.value == 0x93, f"on_disconnect reason {rc!r}"


def test_packet_too_large_for_broker(start_tinsel, connected):
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_packet_size = 1024\n"))
    watcher = connected(srv)
    watcher.subscribe("big/#", qos=0)
    c = raw.RawClient(srv.port, version=5)
    assert c.connect(uid("big")).return_code == 0
    c.send(raw.publish("big/x", b"x" * 2000, version=5))
    seen = c.wait_closed()
    assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x95)]
    c.close()
    watcher.expect_none()
    # Other clients are not disturbed.
    small = connected(srv)
    small.publish("big/ok", b"fine", qos=1)
    assert watcher.expect().payload == b"fine"


def test_keep_alive_cap_enforced(start_tinsel, peers, connected):
    """A v5 client told Server Keep Alive 2 pings at 2s, and is dropped (will sent) if it stops."""
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_keep_alive = 2\n"))
    t = topic_base() + "/cap"
    watcher = connected(srv)
    watcher.subscribe(t, qos=1)
    p = peers(srv, protocol=V5, keepalive=60, will=(t, b"capped-out", 1, False))
    _, _, cprops = p.connect()
    assert prop(cprops, "ServerKeepAlive") == 2
    watcher.expect_none(3.2)
    assert p.connected
    p.pause()
    m = watcher.expect(timeout=6)
    assert m.payload == b"capped-out"


def test_v311_keep_alive_above_cap_refused(start_tinsel):
    """MQTT 3 cannot be told a smaller keep alive: tinsel refuses it (identifier rejected), as
    newer Mosquitto versions do (2.0.11 lets it through)."""
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_keep_alive = 10\n"))
    c = raw.RawClient(srv.port, version=4)
    ack = c.connect(uid("ka"), keepalive=60)
    assert ack.return_code == 2
    assert c.wait_closed() == []
    c.close()
    ok = raw.RawClient(srv.port, version=4)
    assert ok.connect(uid("ka"), keepalive=10).return_code == 0
    ok.close()


def test_connect_timeout(start_tinsel, connected):
    srv = start_tinsel(config=_config("{port}", "[limits]\nconnect_timeout = 1\n"))
    c = raw.RawClient(srv.port, version=4)
    start = time.monotonic()
    assert c.wait_closed(timeout=5) == []
    took = time.monotonic() - start
    assert 0.5 <= took <= 3.5, f"closed after {took:.2f}s"
    c.close()
    # A client that does send CONNECT in time is fine.
    ok = connected(srv)
    time.sleep(1.5)
    assert ok.connected


def test_offline_queue_bounded(start_tinsel, peers, connected):
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_queued_messages = 5\n"))
    t = topic_base() + "/q"
    cid = uid("bounded")
    sub = peers(srv, client_id=cid, protocol=V311, clean=False)
    sub.connect()
    sub.subscribe(t, qos=1)
    sub.disconnect()
    pub = connected(srv)
    for i in range(12):
        pub.publish(t, str(i).encode(), qos=1)
    back = peers(srv, client_id=cid, protocol=V311, clean=False)
    back.connect()
    got = [m.payload for m in back.expect_n(5)]
    back.expect_none()
    # Documented drop policy: when full, new messages are dropped.
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_sys_interval_zero_disables_sys(start_tinsel, connected):
    srv = start_tinsel(config=_config("{port}", "sys_interval = 0\n"))
    sub = connected(srv)
    sub.subscribe("$SYS/#", qos=0)
    sub.expect_none(1.5)


def _exercise(srv):
    t = topic_base() + "/log"
    cid = uid("logged")
    p = Peer(srv.port, client_id=cid)
    p.connect()
    p.subscribe(t, qos=1)
    p.publish(t, b"logged-payload", qos=1)
    p.expect()
    p.disconnect()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if any(cid in ln and "disconnect" in ln.lower() for ln in srv.log().splitlines()):
            break
        time.sleep(0.1)
    return cid, srv.log()


def test_verbose_logs_every_packet(start_tinsel):
    cid, log = _exercise(start_tinsel("-v"))
    assert cid in log
    for word in ("connack", "subscribe", "suback", "publish", "puback", "disconnect", "logged-payload"):
        assert word in log.lower(), f"{word} not in the -v log"
    # Without -v, packets are not logged (connects and disconnects still are).
    cid, quiet = _exercise(start_tinsel())
    assert cid in quiet
    assert "suback" not in quiet.lower() and "logged-payload" not in quiet


def test_log_says_why_a_client_left(start_tinsel, peers):
    srv = start_tinsel()
    cid = uid("why")
    p = peers(srv, client_id=cid)
    p.connect()
    p.drop()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        # Mosquitto's line for a client that closed its socket without DISCONNECT.
        lines = [ln for ln in srv.log().splitlines() if f"Client {cid} closed its connection." in ln]
        if lines:
            break
        time.sleep(0.1)
    assert lines, srv.log()


def test_bad_config_is_a_clear_error(tinsel_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[[listeners]]\naddress = \"127.0.0.1\"\nport = \"not-a-number\"\n")
    r = subprocess.run([str(tinsel_bin), "broker", "-c", str(cfg)], capture_output=True, timeout=10)
    assert r.returncode != 0
    err = (r.stderr + r.stdout).decode()
    assert "bad.toml" in err and "panic" not in err.lower(), err
    missing = subprocess.run(
        [str(tinsel_bin), "broker", "-c", str(tmp_path / "nope.toml")], capture_output=True, timeout=10
    )
    assert missing.returncode != 0
    assert "nope.toml" in (missing.stderr + missing.stdout).decode()


@pytest.mark.parametrize("value", ["two", "0", "-1", ""])
def test_bad_worker_thread_count_is_a_clear_error(tinsel_bin, value):
    env = {**os.environ, "TOKIO_WORKER_THREADS": value}
    r = subprocess.run([str(tinsel_bin), "broker", "-p", str(free_port_number())],
                       capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"tinsel broker: TOKIO_WORKER_THREADS={value} is not a number of threads: set a whole "
        "number above 0, or unset it for one worker thread per CPU"), r.stderr


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_thread_count_is_honoured(tinsel_bin, workers, tmp_path):
    port = free_port_number()
    env = {**os.environ, "TOKIO_WORKER_THREADS": str(workers)}
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([str(tinsel_bin), "broker", "-p", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        names = [Path(t, "comm").read_text().strip() for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        assert names.count("tokio-rt-worker") == workers, names
        peer = Peer(port, protocol=V311)
        peer.connect()
        t = topic_base() + "/workers"
        peer.subscribe(t, qos=1)
        peer.publish(t, b"through the workers", qos=1)
        assert peer.expect().payload == b"through the workers"
        peer.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_port_in_use_is_a_clear_error(tinsel_bin, tinsel_broker):
    r = subprocess.run(
        [str(tinsel_bin), "broker", "-p", str(tinsel_broker.port)], capture_output=True, timeout=10
    )
    assert r.returncode != 0
    assert str(tinsel_broker.port) in (r.stderr + r.stdout).decode()


@pytest.mark.parametrize("version", [3, 4, 5], ids=["v31", "v311", "v5"])
def test_garbage_closes_only_that_connection(tinsel_broker, connected, version):
    t = topic_base() + "/calm"
    watcher = connected(tinsel_broker)
    watcher.subscribe(t, qos=1)
    c = raw.RawClient(tinsel_broker.port, version=version)
    assert c.connect(uid("junk")).return_code == 0
    c.send(b"\x00\x03abc")  # packet type 0 is reserved
    seen = c.wait_closed()
    if version == 5:
        assert [p.type for p in seen] == [raw.DISCONNECT]
    else:
        assert seen == []
    c.close()
    connected(tinsel_broker).publish(t, b"still-fine", qos=1)
    assert watcher.expect().payload == b"still-fine"


def test_offline_queue_bounded_by_bytes(start_tinsel, peers, connected):
    srv = start_tinsel(config=_config("{port}", "[limits]\nmax_queued_bytes = 1000\n"))
    t = topic_base() + "/qb"
    cid = uid("bytes")
    sub = peers(srv, client_id=cid, protocol=V311, clean=False)
    sub.connect()
    sub.subscribe(t, qos=1)
    sub.disconnect()
    pub = connected(srv)
    for i in range(10):
        pub.publish(t, bytes([48 + i]) * 300, qos=1)  # 300-byte payloads: 3 fit in 1000 bytes
    back = peers(srv, client_id=cid, protocol=V311, clean=False)
    back.connect()
    got = [m.payload[:1] for m in back.expect_n(3)]
    back.expect_none()
    assert got == [b"0", b"1", b"2"]


def test_default_listener_is_localhost_1883(tinsel_bin, tmp_path):
    """`tinsel broker` with no arguments listens on 127.0.0.1:1883 (skipped if 1883 is busy)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 1883))
        except OSError:
            pytest.skip("port 1883 is in use on this machine")
    log = open(tmp_path / "default.log", "wb")
    proc = subprocess.Popen([str(tinsel_bin), "broker"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (tmp_path / "default.log").read_text()
            try:
                c = raw.RawClient(1883, version=4, timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "nothing on 127.0.0.1:1883"
                time.sleep(0.05)
        assert c.connect(uid("default")).return_code == 0
        c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        log.close()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_clean_exit_on_signal(start_tinsel, connected, sig):
    import signal

    srv = start_tinsel()
    c = connected(srv)
    srv.proc.send_signal(getattr(signal, sig))
    assert srv.proc.wait(timeout=5) == 0
    c.expect_disconnect(timeout=3)
    assert "panic" not in srv.log().lower()

"""Smoke tests for `tinsel bench`: short runs bounded by count against real brokers, checking
the JSON report (delivery accounting, /proc figures, exit codes)."""

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ports import free_port_number
from servers import wait_for_port

MAKE_CERTS = Path(__file__).resolve().parent.parent / "broker" / "make-certs.sh"


def bench(tinsel_bin, port, *args, timeout=60, check_ok=True):
    cmd = [str(tinsel_bin), "bench", *args, "-p", str(port), "--json", "--no-progress",
           "--time-limit", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    report = json.loads(proc.stdout)
    if check_ok:
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert report["ok"] is True, report["errors"]
    return proc, report


def test_p2p_qos1_counts_every_message(tinsel_bin, any_broker):
    _, r = bench(tinsel_bin, any_broker.port, "p2p", "-n", "3", "--qos", "1", "--count", "300",
                 "--broker-pid", str(any_broker.proc.pid))
    assert r["scenario"] == "p2p"
    assert (r["publishers"], r["subscribers"]) == (3, 3)
    assert r["sent"] == 900 and r["acked"] == 900
    assert r["expected"] == 900 and r["received"] == 900
    assert (r["lost"], r["duplicates"], r["reordered"]) == (0, 0, 0)
    lat = r["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    b = r["broker_process"]
    assert b["pid"] == any_broker.proc.pid
    assert b["cpu_s"] >= 0 and b["rss_kib_loaded"] > 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(MAKE_CERTS), str(d)], check=True, timeout=60, capture_output=True)
    return d


@pytest.mark.parametrize("kind", ["tinsel", "mosquitto"])
def test_p2p_over_tls_websocket_and_websocket_tls(tinsel_bin, kind, start_tinsel, start_mosquitto, certs):
    ports = {t: free_port_number() for t in ("tls", "ws", "wss")}
    keys = (certs / "server.crt", certs / "server.key")
    if kind == "tinsel":
        tls = f'certfile = "{keys[0]}"\nkeyfile = "{keys[1]}"\n'
        broker = start_tinsel(config="sys_interval = 0\n" + "".join(
            f'[[listeners]]\naddress = "127.0.0.1"\nport = {port}\ntransport = "{transport}"\n' + extra
            for port, transport, extra in [
                ("{port}", "tcp", ""), (ports["tls"], "tls", tls), (ports["ws"], "websocket", ""),
                (ports["wss"], "websocket-tls", tls)]))
    else:
        tls = f"certfile {keys[0]}\nkeyfile {keys[1]}\n"
        broker = start_mosquitto(
            f"user root\nlistener {ports['tls']} 127.0.0.1\n{tls}"
            f"listener {ports['ws']} 127.0.0.1\nprotocol websockets\n"
            f"listener {ports['wss']} 127.0.0.1\nprotocol websockets\n{tls}")
    for transport, port in ports.items():
        wait_for_port(port, broker.proc)
        # A 30 kB payload spans many TLS records and WebSocket reads. QoS 0 is paced: a
        # broker may drop QoS 0 messages a subscriber does not read fast enough.
        cases = [(1, "30000", 50, "100000"), (0, "64", 200, "2000")]
        if kind == "mosquitto" and transport != "tls":
            # Mosquitto 2.0's WebSocket listener sends a 30 kB message every 0.3 s or so
            # (paho-mqtt sees the same): small messages only.
            cases = [(1, "1000", 50, "100000"), (0, "64", 200, "2000")]
        for qos, size, count, rate in cases:
            _, r = bench(tinsel_bin, port, "p2p", "-n", "2", "--qos", str(qos), "--size", size,
                         "--count", str(count), "--rate", rate, "--drain", "10", "--transport", transport, "--cafile", str(certs / "ca.crt"),
                         "--broker-pid", str(broker.proc.pid))
            assert r["transport"] == transport
            assert r["received"] == 2 * count and r["lost"] == 0 and r["duplicates"] == 0, (transport, r)
        _, r = bench(tinsel_bin, port, "conn", "-n", "50", "--duration", "1", "--transport", transport,
                     "--cafile", str(certs / "ca.crt"))
        assert r["connect"]["connected"] == 50, (transport, r["errors"])
    # Plain TCP to a TLS port is not TLS: the run fails with a one-line reason.
    proc, r = bench(tinsel_bin, ports["tls"], "p2p", "-n", "1", "--count", "1", check_ok=False)
    assert proc.returncode != 0 and r["ok"] is False


def test_tls_without_a_ca_is_a_one_line_error(tinsel_bin, free_port):
    proc = subprocess.run([str(tinsel_bin), "bench", "p2p", "-p", str(free_port), "--transport", "tls",
                           "--count", "1", "--no-progress"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--cafile" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_fanout_qos0_delivers_to_every_subscriber(tinsel_bin, mosquitto_broker):
    _, r = bench(tinsel_bin, mosquitto_broker.port, "fanout", "-n", "4", "--count", "250",
                 "--rate", "5000")
    assert r["sent"] == 250
    assert r["expected"] == 1000 and r["received"] == 1000 and r["lost"] == 0


def test_qos2_mqtt5_fanin(tinsel_bin, mosquitto_broker):
    _, r = bench(tinsel_bin, mosquitto_broker.port, "fanin", "-n", "3", "--qos", "2",
                 "--mqtt", "5", "--count", "100", "--window", "10")
    assert r["mqtt"] == "5.0" and r["qos"] == 2
    assert r["received"] == 300 and r["duplicates"] == 0 and r["lost"] == 0


def test_shared_group_gets_each_message_once(tinsel_bin, mosquitto_broker):
    _, r = bench(tinsel_bin, mosquitto_broker.port, "shared", "-n", "2", "--subscribers", "3",
                 "--qos", "1", "--count", "200")
    assert r["subscribers"] == 3
    assert r["received"] == 400 and r["lost"] == 0 and r["duplicates"] == 0


def test_conn_reports_rate_and_memory(tinsel_bin, mosquitto_broker):
    _, r = bench(tinsel_bin, mosquitto_broker.port, "conn", "-n", "200", "--source-addrs", "2",
                 "--broker-pid", str(mosquitto_broker.proc.pid))
    c = r["connect"]
    assert (c["attempted"], c["connected"], c["failed"]) == (200, 200, 0)
    assert c["rate"] > 0 and c["source_addrs"] == 2
    assert r["broker_process"]["rss_per_conn_kib"] is not None


def test_pub_and_sub_in_two_processes(tinsel_bin, mosquitto_broker):
    prefix = f"tb-smoke-{time.monotonic_ns()}"
    sub = subprocess.Popen(
        [str(tinsel_bin), "bench", "sub", "-p", str(mosquitto_broker.port), "-n", "2",
         "--duration", "4", "--topic-prefix", prefix, "--json", "--no-progress"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let the subscribers subscribe
    _, p = bench(tinsel_bin, mosquitto_broker.port, "pub", "-n", "2", "--qos", "1",
                 "--count", "150", "--topic-prefix", prefix)
    assert p["sent"] == 300 and p["acked"] == 300
    out, _ = sub.communicate(timeout=30)
    s = json.loads(out)
    assert s["ok"] is True, s["errors"]
    assert s["received"] == 600  # two subscribers, each gets all 300
    assert s["lost"] == 0 and s["latency_us"] is not None


def test_bad_settings_fail_with_one_line(tinsel_bin, mosquitto_broker):
    proc = subprocess.run(
        [str(tinsel_bin), "bench", "p2p", "-p", str(mosquitto_broker.port), "--size", "8",
         "--count", "1"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--size" in proc.stderr


def test_unreachable_broker_is_an_error(tinsel_bin, free_port):
    proc, r = bench(tinsel_bin, free_port, "p2p", "-n", "1", "--count", "1", check_ok=False)
    assert proc.returncode != 0 and r["ok"] is False
    assert "cannot connect" in r["errors"][0]


def _serve_black_hole(conn):
    """A broker that acknowledges everything and delivers nothing (MQTT 3.1.1)."""
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 2:
                length, mult, i = 0, 1, 1
                while i < len(buf):
                    length += (buf[i] & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if buf[i - 1] < 0x80:
                        break
                else:
                    break
                if len(buf) < i + length:
                    break
                first, body, buf = buf[0], buf[i:i + length], buf[i + length:]
                kind = first >> 4
                if kind == 1:  # CONNECT -> CONNACK
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE -> SUBACK granting QoS 1
                    conn.sendall(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 3 and (first >> 1) & 3:  # PUBLISH QoS 1 -> PUBACK, then drop it
                    topic_len = int.from_bytes(body[:2], "big")
                    conn.sendall(b"\x40\x02" + body[2 + topic_len:4 + topic_len])
                elif kind == 12:
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:
                    return


def test_qos1_loss_is_an_error(tinsel_bin):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def accept_loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_serve_black_hole, args=(c,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    try:
        proc, r = bench(tinsel_bin, port, "p2p", "-n", "1", "--qos", "1", "--count", "50",
                        "--drain", "0.5", check_ok=False)
    finally:
        srv.close()
    assert proc.returncode != 0 and r["ok"] is False
    assert r["sent"] == 50 and r["acked"] == 50 and r["received"] == 0
    assert r["lost"] == 50
    assert any("lost" in e for e in r["errors"])


def test_silent_broker_hits_the_time_limit(tinsel_bin):
    """A server that accepts and never answers CONNECT: the run ends at its hard cap."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [str(tinsel_bin), "bench", "p2p", "-p", str(port), "-n", "1", "--count", "1",
             "--time-limit", "2", "--drain", "0.5", "--json", "--no-progress"],
            capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - start
    finally:
        srv.close()
    r = json.loads(proc.stdout)
    assert proc.returncode != 0 and r["ok"] is False
    assert "time limit" in r["errors"][0]
    assert elapsed < 15


def test_overload_run_ends_cleanly(tinsel_bin, mosquitto_broker):
    """Unlimited QoS 0 fan-out for a fixed time: publishers end under back-pressure without
    errors, and every message written is accounted for."""
    _, r = bench(tinsel_bin, mosquitto_broker.port, "fanout", "-n", "20", "--duration", "3",
                 "--drain", "3")
    assert r["errors"] == []
    assert r["sent"] > 0 and r["expected"] == 20 * r["sent"]
    assert r["received"] + r["lost"] == r["expected"]


def sys_value(port, topic):
    r = subprocess.run(["mosquitto_sub", "-p", str(port), "-t", topic, "-C", "1", "-W", "5"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


@pytest.mark.parametrize("kind", ["tinsel", "mosquitto"])
def test_persistent_sessions_stay_in_311_and_end_in_5(tinsel_bin, kind, start_tinsel, start_mosquitto, tmp_path):
    if kind == "tinsel":
        broker = start_tinsel("--data", str(tmp_path / "data"), config=(
            'sys_interval = 1\n[[listeners]]\naddress = "127.0.0.1"\nport = {port}\n'))
    else:
        broker = start_mosquitto("sys_interval 1\n")
    _, r = bench(tinsel_bin, broker.port, "p2p", "-n", "3", "--qos", "1", "--count", "200", "--persistent",
                 "--mqtt", "5")
    assert r["received"] == 600 and r["lost"] == 0
    time.sleep(2.5)  # a $SYS period after the last disconnect
    assert sys_value(broker.port, "$SYS/broker/clients/disconnected") == 0
    _, r = bench(tinsel_bin, broker.port, "p2p", "-n", "3", "--qos", "1", "--count", "200", "--persistent")
    assert r["received"] == 600 and r["lost"] == 0
    time.sleep(2.5)
    # The six MQTT 3.1.1 sessions (three publishers, three subscribers) wait offline.
    assert sys_value(broker.port, "$SYS/broker/clients/disconnected") == 6


def test_credentials_log_in_and_wrong_ones_are_refused(tinsel_bin, start_mosquitto, tmp_path):
    pw = tmp_path / "passwd"
    made = subprocess.run([str(tinsel_bin), "passwd", "-c", "-b", str(pw), "elf", "cocoa"],
                          capture_output=True)
    assert made.returncode == 0, made.stderr
    pw.chmod(0o644)
    broker = start_mosquitto(f"user root\nallow_anonymous false\npassword_file {pw}\n")
    _, r = bench(tinsel_bin, broker.port, "p2p", "-n", "2", "--qos", "1", "--count", "50",
                 "-u", "elf", "-P", "cocoa")
    assert r["received"] == 100
    proc, r = bench(tinsel_bin, broker.port, "conn", "-n", "5", "-u", "elf", "-P", "wrong",
                    check_ok=False)
    assert proc.returncode != 0 and r["ok"] is False
    assert r.get("connect", {}).get("connected", 0) == 0
    assert any("CONNACK" in e for e in r["errors"]), r["errors"]

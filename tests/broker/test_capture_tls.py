"""The capture of a TLS listener records the bytes on the wire: TLS records (ciphertext), for
TLS and WebSocket over TLS, never the decrypted MQTT; plain TCP and plain WebSocket stay
readable MQTT. Real peers: mosquitto_pub/sub over TLS, paho over WebSocket, tshark to read.
"""

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from brokertest import WAIT, free_port_number, topic_base
from test_tls_ws import Sub, _wait_port, paho, pub

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: run scripts/install-test-peers")
    d = tmp_path_factory.mktemp("capture-certs")
    subprocess.run([str(HERE / "make-certs.sh"), str(d)], check=True, timeout=60)
    return d


def tshark(capture: Path, *args: str) -> str:
    assert shutil.which("tshark"), "tshark is not installed: run scripts/install-test-peers"
    out = subprocess.run(["tshark", "-r", str(capture), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_tls_listener_is_captured_as_ciphertext(start_tinsel, certs, tmp_path):
    capture = tmp_path / "tls.pcapng"
    tls, ws, wss = free_port_number(), free_port_number(), free_port_number()
    keys = f'certfile = "{certs}/server.crt"\nkeyfile = "{certs}/server.key"\n'
    server = start_tinsel(
        config=f'sys_interval = 0\ncapture = "{capture}"\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\n{keys}'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {ws}\ntransport = "websocket"\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {wss}\ntransport = "websocket-tls"\n{keys}'
    )
    for p in (tls, ws, wss):
        _wait_port(p)
    base = topic_base()
    secret_topic, secret = f"{base}/vault-topic-7c1f", "secret-payload-9d2e4b"
    wss_secret = "wss-secret-payload-51aa"
    clear_topic, clear = f"{base}/clear", "clear-payload-3f80"

    # Over TLS both ways: mosquitto_pub to a mosquitto_sub, both on the TLS listener.
    sub = Sub(tls, certs, secret_topic, count=2)
    assert pub(tls, certs, secret_topic, secret).returncode == 0
    # Over WebSocket on TLS, to the same TLS subscriber.
    c = paho(wss, transport="websockets", tls=certs)
    c.publish(secret_topic, wss_secret, qos=1).wait_for_publish(WAIT)
    assert sub.lines() == [secret, wss_secret]
    c.disconnect()
    c.loop_stop()
    # In the clear, on the plain listener and on plain WebSocket: readable in the capture.
    r = subprocess.run(["mosquitto_pub", "-p", str(server.port), "-t", clear_topic, "-m", clear], timeout=WAIT)
    assert r.returncode == 0
    w = paho(ws, transport="websockets")
    w.subscribe(clear_topic, qos=1)
    time.sleep(0.3)
    w.publish(clear_topic, "ws-" + clear, qos=1).wait_for_publish(WAIT)
    deadline = time.monotonic() + WAIT
    while not w.got:
        assert time.monotonic() < deadline, "the WebSocket client got nothing"
        time.sleep(0.02)
    w.disconnect()
    w.loop_stop()
    server.stop()  # the capture file is complete once the broker has stopped

    raw = capture.read_bytes()
    assert clear.encode() in raw, "the plain listener's payload is not in the capture"
    for needle in (secret, wss_secret, secret_topic):
        assert needle.encode() not in raw, f"{needle!r} is readable in the capture of a TLS listener"

    # tshark reads TLS records on the TLS ports: the handshake and application data both ways.
    for port in (tls, wss):
        records = tshark(
            capture,
            "-d",
            f"tcp.port=={port},tls",
            "-Y",
            f"tcp.port=={port} && tls.record",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.type",
            "-e",
            "tls.record.content_type",
            "-e",
            "tls.record.opaque_type",
        ).splitlines()
        # (source port, handshake types, record types): TLS 1.3 shows its encrypted records'
        # type as the "opaque type", 23 (application data), whatever they hold.
        rows = []
        for line in records:
            f = (line.split("\t") + ["", "", "", ""])[:4]
            rows.append((f[0], f[1], f[2].split(",") + f[3].split(",")))
        assert any("1" in r[1].split(",") and r[0] != str(port) for r in rows), f"no Client Hello on {port}: {rows}"
        assert any("2" in r[1].split(",") and r[0] == str(port) for r in rows), f"no Server Hello on {port}: {rows}"
        for side in ("client", "broker"):
            from_broker = side == "broker"
            assert any(
                "23" in r[2] and (r[0] == str(port)) == from_broker for r in rows
            ), f"no application data from the {side} on {port}: {rows}"
        # And no MQTT: the dissector finds nothing to decode there.
        mqtt = tshark(capture, "-d", f"tcp.port=={port},mqtt", "-Y", f"tcp.port=={port} && mqtt.topic")
        assert mqtt.strip() == "", mqtt

    # The plain listener and plain WebSocket decode as MQTT, topic and payload readable.
    for port, payload in ((server.port, clear), (ws, "ws-" + clear)):
        plain = tshark(
            capture,
            "-d",
            f"tcp.port=={port},mqtt",
            "-Y",
            f"tcp.port=={port} && mqtt.msgtype == 3",
            "-T",
            "fields",
            "-e",
            "mqtt.topic",
            "-e",
            "mqtt.msg",
        )
        assert f"{clear_topic}\t{payload.encode().hex()}" in plain.replace(":", ""), plain
    # Every stream's synthetic TCP is consistent: no gaps, retransmissions or bad checksums.
    problems = tshark(capture, "-Y", "tcp.analysis.flags && !tcp.analysis.window_update")
    assert problems.strip() == "", problems

"""HAProxy in front of the broker, passing each client's address with the PROXY protocol
(`send-proxy` for version 1, `send-proxy-v2` for version 2), to a plain and a TLS listener.

The broker must name the client, not HAProxy, in its connection line: the test reads the
client's own source port from its socket and finds it in the broker's log.
"""

import shutil
import socket
import ssl
import subprocess
import time

import pytest

import rawmqtt
from brokertest import WAIT, free_port_number, topic_base, uid
from servers import Server
from test_tls_ws import certs  # noqa: F401 (fixture)


def haproxy_exe() -> str:
    for path in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if path and shutil.which(path):
            return path
    pytest.fail("haproxy not found: run scripts/install-test-peers")


@pytest.fixture
def start_haproxy(tmp_path):
    """Factory: start_haproxy(backend_port, option) -> the port HAProxy listens on."""
    started = []

    def start(backend_port: int, option: str) -> int:
        front = free_port_number()
        cfg = tmp_path / f"haproxy-{front}.cfg"
        cfg.write_text(
            "global\n  maxconn 100\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
            f"frontend mqtt\n  bind 127.0.0.1:{front}\n  default_backend broker\n"
            f"backend broker\n  server tinsel 127.0.0.1:{backend_port} {option}\n"
        )
        # -db: stay in the foreground; its own log is not needed.
        started.append(Server([haproxy_exe(), "-db", "-f", str(cfg)], front, tmp_path / f"haproxy-{front}.log", "haproxy"))
        return front

    yield start
    for s in started:
        s.stop()


def wait_for_line(server, needle):
    deadline = time.monotonic() + WAIT
    while needle not in server.log():
        assert time.monotonic() < deadline, f"{needle!r} not in the broker's log:\n{server.log()}"
        time.sleep(0.05)


@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_haproxy_passes_the_client_address(option, start_tinsel, start_haproxy, certs):  # noqa: F811
    tls = free_port_number()
    server = start_tinsel(
        config=f'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\nproxy_protocol = true\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\nproxy_protocol = true\n'
        f'certfile = "{certs}/server.crt"\nkeyfile = "{certs}/server.key"\n'
    )
    front_plain = start_haproxy(server.port, option)
    front_tls = start_haproxy(tls, option)
    topic = topic_base() + "/haproxy"

    # Plain: a subscriber through HAProxy; the broker names its own source port.
    sub_id = uid("behind")
    sub = rawmqtt.RawClient(front_plain)
    client_port = sub.sock.getsockname()[1]
    sub.connect(sub_id)
    sub.send(rawmqtt.subscribe(1, [(topic, 1)]))
    sub.expect(rawmqtt.SUBACK)
    wait_for_line(server, f"from 127.0.0.1:{client_port} as {sub_id}")

    # TLS through HAProxy (TCP mode, the broker ends TLS): mosquitto_pub's message arrives.
    raw = socket.create_connection(("127.0.0.1", front_tls), timeout=WAIT)
    tls_port = raw.getsockname()[1]
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    pub_id = uid("tls")
    with ctx.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(rawmqtt.connect(pub_id, version=4))
        assert t.recv(4)[0] >> 4 == rawmqtt.CONNACK
        t.sendall(rawmqtt.publish(topic, b"through haproxy"))
        assert sub.expect(rawmqtt.PUBLISH).body.endswith(b"through haproxy")
    wait_for_line(server, f"from 127.0.0.1:{tls_port} as {pub_id}")

    r = subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(front_tls), "--cafile", str(certs / "ca.crt"),
         "-t", topic, "-m", "mosquitto_pub via haproxy", "-q", "1"],
        capture_output=True,
        timeout=WAIT,
    )
    assert r.returncode == 0, r.stderr
    assert sub.expect(rawmqtt.PUBLISH).body.endswith(b"mosquitto_pub via haproxy")
    sub.close()

"""TLS, WebSocket and WebSocket-over-TLS listeners, with real peers: mosquitto_pub/sub,
paho-mqtt, `openssl s_client`, and a hand-written WebSocket client for exact frames.

Certificates are made for the test session by `make-certs.sh` (openssl). The tests marked with
`tls_kind` run against Mosquitto too, on the same certificates and equivalent settings.
"""

import base64
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import rawmqtt
from brokertest import WAIT, free_port_number, topic_base, uid

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: run scripts/install-test-peers")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(HERE / "make-certs.sh"), str(d)], check=True, timeout=60)
    return d


class Ports:
    """The ports of one broker's listeners."""

    def __init__(self, server, **ports):
        self.server = server
        self.plain = server.port
        for k, v in ports.items():
            setattr(self, k, v)


@pytest.fixture
def start_listeners(start_tinsel, start_mosquitto, certs):
    """Factory: start(kind, require_certificate=False, tls_version=None, connect_timeout=None)
    -> Ports(plain, tls, ws, wss) of a Tinsel or Mosquitto broker, every listener on 127.0.0.1."""

    def start(kind, require_certificate=False, tls_version=None, connect_timeout=None):
        tls, ws, wss = free_port_number(), free_port_number(), free_port_number()
        c = certs
        if kind == "tinsel":
            tls_keys = f'certfile = "{c}/server.crt"\nkeyfile = "{c}/server.key"\n'
            mtls = f'cafile = "{c}/ca.crt"\n' + ("require_certificate = true\n" if require_certificate else "")
            version = f'tls_version = "{tls_version}"\n' if tls_version else ""
            limits = f"[limits]\nconnect_timeout = {connect_timeout}\n" if connect_timeout else ""
            cfg = (
                f"sys_interval = 0\n"
                f'[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
                f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\n{tls_keys}{mtls}{version}'
                f'[[listeners]]\naddress = "127.0.0.1"\nport = {ws}\ntransport = "websocket"\n'
                f'[[listeners]]\naddress = "127.0.0.1"\nport = {wss}\ntransport = "websocket-tls"\n{tls_keys}'
                f"{limits}"
            )
            server = start_tinsel(config=cfg)
        else:
            tls_keys = f"certfile {c}/server.crt\nkeyfile {c}/server.key\n"
            mtls = f"cafile {c}/ca.crt\n" + ("require_certificate true\n" if require_certificate else "")
            version = f"tls_version {tls_version}\n" if tls_version else ""
            # `user root`: Mosquitto started as root would drop to its own user, who cannot
            # read the test's certificates.
            server = start_mosquitto(
                f"user root\nlistener {tls} 127.0.0.1\n{tls_keys}{mtls}{version}"
                f"listener {ws} 127.0.0.1\nprotocol websockets\n"
                f"listener {wss} 127.0.0.1\nprotocol websockets\n{tls_keys}"
            )
        for p in (tls, ws, wss):
            _wait_port(p)
        return Ports(server, tls=tls, ws=ws, wss=wss)

    return start


def _wait_port(port):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on {port}")


kinds = pytest.mark.parametrize("kind", ["tinsel", "mosquitto"])


def mosq(tool, port, certs, *args, cert=None):
    cmd = [tool, "-h", "localhost", "-p", str(port), "--cafile", str(certs / "ca.crt")]
    if cert:
        cmd += ["--cert", str(certs / f"{cert}.crt"), "--key", str(certs / f"{cert}.key")]
    return cmd + list(args)


def pub(port, certs, topic, msg, cert=None):
    return subprocess.run(
        mosq("mosquitto_pub", port, certs, "-t", topic, "-m", msg, "-q", "1", cert=cert),
        capture_output=True,
        timeout=WAIT,
    )


class Sub:
    """A mosquitto_sub waiting for `count` messages."""

    def __init__(self, port, certs, topic, count=1, cert=None):
        args = mosq("mosquitto_sub", port, certs, "-t", topic, "-C", str(count), "-W", "5", "-q", "1", cert=cert)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.4)

    def lines(self):
        out, err = self.proc.communicate(timeout=WAIT + 2)
        assert self.proc.returncode == 0, err
        return out.decode().splitlines()


def paho(port, transport="tcp", tls=None, path="/mqtt"):
    """A connected paho client; its messages collect in `.got`."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid("p"), transport=transport, protocol=mqtt.MQTTv5)
    if transport == "websockets":
        c.ws_set_options(path=path)
    if tls:
        c.tls_set(ca_certs=str(tls / "ca.crt"))
    c.got = []
    c.on_message = lambda _c, _u, m: c.got.append((m.topic, m.payload))
    c.connect("localhost", port)
    c.loop_start()
    deadline = time.monotonic() + WAIT
    while not c.is_connected():
        assert time.monotonic() < deadline, f"paho could not connect to {port} over {transport}"
        time.sleep(0.02)
    return c


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@kinds
def test_mosquitto_clients_over_tls(kind, start_listeners, certs):
    p = start_listeners(kind)
    topic = topic_base() + "/t"
    sub = Sub(p.tls, certs, topic, count=2)
    assert pub(p.tls, certs, topic, "over-tls").returncode == 0
    # From the plain listener to the TLS one: one broker behind both.
    r = subprocess.run(["mosquitto_pub", "-p", str(p.plain), "-t", topic, "-m", "over-tcp", "-q", "1"], timeout=WAIT)
    assert r.returncode == 0
    assert sub.lines() == ["over-tls", "over-tcp"]


@kinds
def test_mutual_tls_takes_our_ca_and_refuses_a_foreign_one(kind, start_listeners, certs):
    p = start_listeners(kind, require_certificate=True)
    topic = topic_base() + "/m"
    sub = Sub(p.tls, certs, topic, cert="client")
    assert pub(p.tls, certs, topic, "trusted", cert="client").returncode == 0
    assert sub.lines() == ["trusted"]
    foreign = pub(p.tls, certs, topic, "x", cert="foreign-client")
    assert foreign.returncode != 0, "a certificate from a foreign CA was accepted"
    anonymous = pub(p.tls, certs, topic, "x")
    assert anonymous.returncode != 0, "a client without a certificate was accepted"


def s_client(port, certs, version):
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version, "-CAfile", str(certs / "ca.crt"), "-brief"],
        input=b"",
        capture_output=True,
        timeout=WAIT,
    )


@kinds
def test_tls_versions(kind, start_listeners, certs):
    p = start_listeners(kind)
    for version, name in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")]:
        r = s_client(p.tls, certs, version)
        assert r.returncode == 0 and name.encode() in r.stderr + r.stdout, r.stderr
    p13 = start_listeners(kind, tls_version="tlsv1.3")
    assert s_client(p13.tls, certs, "-tls1_3").returncode == 0
    assert s_client(p13.tls, certs, "-tls1_2").returncode != 0, "TLS 1.2 accepted below tls_version"


@kinds
def test_paho_over_tls_websocket_and_websocket_tls(kind, start_listeners, certs):
    p = start_listeners(kind)
    base = topic_base()
    clients = {
        "tls": paho(p.tls, tls=certs),
        "ws": paho(p.ws, transport="websockets"),
        "wss": paho(p.wss, transport="websockets", tls=certs),
    }
    try:
        for c in clients.values():
            c.subscribe(base + "/#", qos=1)
        time.sleep(0.3)
        big = os.urandom(100_000)  # several TLS records and WebSocket reads
        for name, c in clients.items():
            c.publish(f"{base}/{name}", big if name == "ws" else name.encode(), qos=1)
        for name, c in clients.items():
            wait_for(lambda c=c: len(c.got) == 3, f"{name} got {len(c.got)} of 3")
            assert sorted(c.got) == sorted([(f"{base}/tls", b"tls"), (f"{base}/ws", big), (f"{base}/wss", b"wss")])
    finally:
        for c in clients.values():
            c.disconnect()
            c.loop_stop()


class RawWs:
    """A WebSocket client that writes exact frames (masked, as a client must)."""

    def __init__(self, port, path="/mqtt", protocol="mqtt"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        self.status = head.split(b"\r\n", 1)[0]
        self.head, _, self.buf = head.partition(b"\r\n\r\n")
        self.stream = b""  # MQTT bytes not yet split into packets

    def send(self, payload: bytes, opcode=2, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            hdr = bytes([b0, 0x80 | n])
        elif n < 65536:
            hdr = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def frame(self):
        """(opcode, payload) of the next frame from the broker (unmasked)."""
        self._need(2)
        op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        pos = 2
        if n == 126:
            self._need(4)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(pos + n)
        payload, self.buf = self.buf[pos : pos + n], self.buf[pos + n :]
        return op, payload

    def packets(self, count):
        """The next `count` MQTT packets, whatever frames carry them."""
        out = []
        while len(out) < count:
            op, payload = self.frame()
            assert op in (0, 2), f"opcode {op}"
            self.stream += payload
            while len(self.stream) >= 2:
                try:
                    n, used = rawmqtt.read_varint(self.stream, 1)
                except IndexError:
                    break
                end = 1 + used + n
                if len(self.stream) < end:
                    break
                out.append(self.stream[:end])
                self.stream = self.stream[end:]
        return out

    def closed(self, within=WAIT) -> bool:
        """True if the broker closes (a close frame or the end of the stream) within `within`."""
        self.sock.settimeout(within)
        try:
            while True:
                op, _ = self.frame()
                if op == 8:
                    return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False


@kinds
def test_websocket_packets_split_across_frames_and_packed_in_one(kind, start_listeners):
    p = start_listeners(kind)
    ws = RawWs(p.ws)
    assert b" 101 " in ws.status, ws.status
    assert b"sec-websocket-protocol: mqtt" in ws.head.lower()
    topic = topic_base() + "/f"
    connect = rawmqtt.connect(uid("ws"), version=4)
    ws.send(connect[:3])  # a packet split across two messages
    ws.send(connect[3:])
    (connack,) = ws.packets(1)
    assert connack[0] >> 4 == rawmqtt.CONNACK and connack[-1] == 0
    # Several packets in one message, the last one cut in two across a fragmented message
    # (a continuation frame).
    body = rawmqtt.subscribe(1, [(topic, 0)]) + rawmqtt.publish(topic, b"x" * 1000)
    ws.send(body[:-300], fin=False)
    ws.send(body[-300:], opcode=0)
    suback, publish = ws.packets(2)
    assert suback[0] >> 4 == rawmqtt.SUBACK
    assert publish[0] >> 4 == rawmqtt.PUBLISH and publish.endswith(b"x" * 1000)
    # A text message is refused: the connection closes [MQTT-6.0.0-1].
    ws.send(rawmqtt.pingreq(), opcode=1)
    assert ws.closed(), "a text frame did not close the connection"


def test_websocket_path_and_subprotocol(start_listeners):
    p = start_listeners("tinsel")
    assert b" 404 " in RawWs(p.ws, path="/other").status
    assert b" 400 " in RawWs(p.ws, protocol="chat").status
    assert b" 101 " in RawWs(p.ws, protocol="chat, mqtt").status
    assert b" 101 " in RawWs(p.ws, protocol=None).status


def closes(port, data: bytes, within: float) -> bool:
    """Sends `data` to `port`; True if the broker closes the connection within `within` s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=within)
    try:
        s.sendall(data)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    finally:
        s.close()


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl), without finishing the handshake."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_bad_input_closes_only_that_connection(start_listeners, certs):
    p = start_listeners("tinsel", connect_timeout=1)
    base = topic_base()
    bystander = paho(p.tls, tls=certs)
    bystander.subscribe(base + "/#", qos=1)
    time.sleep(0.3)
    hello = client_hello()
    connect = rawmqtt.connect(uid("bad"), version=4)
    try:
        assert closes(p.tls, connect, 3), "plain MQTT to a TLS port left open"
        assert closes(p.plain, hello, 3), "a TLS ClientHello to a plain port left open"
        assert closes(p.ws, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", 3), "HTTP without upgrade left open"
        assert closes(p.wss, connect, 3), "plain MQTT to a WebSocket-TLS port left open"
        # A handshake that never finishes: closed by the connect timeout (1 s), not before.
        for port, partial in [(p.tls, hello[:20]), (p.ws, b"GET /mqtt HTTP/1.1\r\n")]:
            start = time.monotonic()
            assert closes(port, partial, 4), f"a stalled handshake on {port} left open"
            took = time.monotonic() - start
            assert 0.8 < took < 3, f"closed after {took:.1f}s, connect timeout is 1s"
        for i in range(3):
            bystander.publish(f"{base}/{i}", b"still here", qos=1)
        wait_for(lambda: len(bystander.got) == 3, "the bystander stopped getting its messages")
    finally:
        bystander.disconnect()
        bystander.loop_stop()


def run_broker(tinsel_bin, tmp_path, config: str):
    cfg = tmp_path / "b.conf"
    cfg.write_text(config)
    return subprocess.run([str(tinsel_bin), "broker", "-c", str(cfg)], capture_output=True, timeout=WAIT)


def test_expired_or_unreadable_certificate_stops_the_start(tinsel_bin, tmp_path, certs):
    port = free_port_number()
    expired = run_broker(
        tinsel_bin,
        tmp_path,
        f'[[listeners]]\nport = {port}\ntransport = "tls"\ncertfile = "{certs}/expired.crt"\nkeyfile = "{certs}/expired.key"\n',
    )
    err = expired.stderr.decode()
    assert expired.returncode != 0
    assert f"{certs}/expired.crt" in err and "expired on 2020-01-02" in err, err
    missing = run_broker(
        tinsel_bin, tmp_path, f"listener {port} 127.0.0.1\ncertfile {tmp_path}/none.crt\nkeyfile {certs}/server.key\n"
    )
    err = missing.stderr.decode()
    assert missing.returncode != 0 and f"{tmp_path}/none.crt" in err and "cannot read" in err, err
    wrong_key = run_broker(
        tinsel_bin,
        tmp_path,
        f'[[listeners]]\nport = {port}\ntransport = "tls"\ncertfile = "{certs}/server.crt"\nkeyfile = "{certs}/client.key"\n',
    )
    assert wrong_key.returncode != 0 and "server.crt" in wrong_key.stderr.decode(), wrong_key.stderr


def test_mosquitto_conf_tls_and_websocket_listeners(start_tinsel, certs):
    tls, ws = free_port_number(), free_port_number()
    # A Mosquitto file (the content decides the format, not the name).
    start_tinsel(
        config=f"listener {{port}} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
        f"cafile {certs}/ca.crt\nrequire_certificate true\n"
        f"listener {ws} 127.0.0.1\nprotocol websockets\n"
    )
    _wait_port(tls)
    _wait_port(ws)
    topic = topic_base() + "/c"
    listener = paho(ws, transport="websockets", path="/anything")  # Mosquitto serves any path
    try:
        listener.subscribe(topic, qos=1)
        time.sleep(0.3)
        assert pub(tls, certs, topic, "via-mosquitto-conf", cert="client").returncode == 0
        assert pub(tls, certs, topic, "x").returncode != 0, "require_certificate not applied"
        wait_for(lambda: listener.got == [(topic, b"via-mosquitto-conf")], f"got {listener.got}")
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_sighup_reloads_the_certificate_for_new_connections(start_tinsel, tmp_path, certs):
    tls = free_port_number()
    for ext in ("crt", "key"):
        shutil.copy(certs / f"server.{ext}", tmp_path / f"live.{ext}")
    server = start_tinsel(
        config=f'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\n'
        f'certfile = "{tmp_path}/live.crt"\nkeyfile = "{tmp_path}/live.key"\n'
    )
    _wait_port(tls)
    topic = topic_base()
    assert pub(tls, certs, topic, "old").returncode == 0
    old = paho(tls, tls=certs)  # an open connection keeps its session across the reload
    for ext in ("crt", "key"):
        shutil.copy(certs / f"foreign-server.{ext}", tmp_path / f"live.{ext}")
    server.proc.send_signal(signal.SIGHUP)
    foreign_ca = tmp_path / "fca"
    foreign_ca.mkdir()
    shutil.copy(certs / "foreign-ca.crt", foreign_ca / "ca.crt")
    deadline = time.monotonic() + WAIT
    while pub(tls, foreign_ca, topic, "new").returncode != 0:
        assert time.monotonic() < deadline, "the new certificate is not served after SIGHUP"
        time.sleep(0.1)
    assert pub(tls, certs, topic, "x").returncode != 0, "the old certificate is still served"
    assert old.is_connected()
    old.disconnect()
    old.loop_stop()
    assert server.proc.poll() is None, "SIGHUP stopped the broker"


@kinds
def test_tinsel_clients_over_websocket_and_websocket_tls(kind, start_listeners, certs, tinsel_bin):
    p = start_listeners(kind)
    for url, tls in [(f"ws://localhost:{p.ws}/mqtt", []), (f"wss://localhost:{p.wss}/mqtt", ["--cafile", str(certs / "ca.crt")])]:
        topic = topic_base() + "/cli"
        sub = subprocess.Popen(
            [str(tinsel_bin), "sub", "-L", url, *tls, "-t", topic, "-C", "1", "-W", "5", "-q", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        r = subprocess.run(
            [str(tinsel_bin), "pub", "-L", url, *tls, "-t", topic, "-m", f"via {url}", "-q", "1"],
            capture_output=True,
            timeout=WAIT,
        )
        assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=WAIT + 2)
        assert sub.returncode == 0, err
        assert out.decode().strip() == f"via {url}"
    if kind == "tinsel":
        r = subprocess.run(
            [str(tinsel_bin), "pub", "-L", f"ws://localhost:{p.ws}/other", "-t", "t", "-m", "x"],
            capture_output=True,
            timeout=WAIT,
        )
        assert r.returncode != 0 and b"404" in r.stderr, r.stderr


@kinds
def test_unix_socket_listener(kind, start_tinsel, start_mosquitto, tinsel_bin, tmp_path):
    sock = tmp_path / "mqtt.sock"
    if kind == "tinsel":
        server = start_tinsel(
            config=f'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
            f'[[listeners]]\ntransport = "unix"\naddress = "{sock}"\n'
        )
    else:
        server = start_mosquitto(f"user root\nlistener 0 {sock}\n")
    deadline = time.monotonic() + WAIT
    while not sock.exists():
        assert time.monotonic() < deadline, "no socket file"
        time.sleep(0.05)
    topic = topic_base() + "/unix"
    sub = subprocess.Popen(
        [str(tinsel_bin), "sub", "--unix", str(sock), "-t", topic, "-C", "2", "-W", "5", "-q", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    r = subprocess.run(["mosquitto_pub", "--unix", str(sock), "-t", topic, "-m", "over-unix", "-q", "1"], timeout=WAIT)
    assert r.returncode == 0
    r = subprocess.run(["mosquitto_pub", "-p", str(server.port), "-t", topic, "-m", "over-tcp", "-q", "1"], timeout=WAIT)
    assert r.returncode == 0
    out, err = sub.communicate(timeout=WAIT + 2)
    assert sub.returncode == 0, err
    assert out.decode().splitlines() == ["over-unix", "over-tcp"]
    server.stop()
    if kind == "tinsel":
        assert not sock.exists(), "the socket file was left behind"


def v2_header(ip6: str, port: int) -> bytes:
    body = socket.inet_pton(socket.AF_INET6, ip6) + socket.inet_pton(socket.AF_INET6, "::1")
    body += struct.pack("!HH", port, 1883)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


def test_proxy_protocol_names_the_client(start_tinsel, certs):
    tls = free_port_number()
    server = start_tinsel(
        config=f'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\nproxy_protocol = true\n'
        f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\nproxy_protocol = true\n'
        f'certfile = "{certs}/server.crt"\nkeyfile = "{certs}/server.key"\n'
    )
    _wait_port(tls)
    topic = topic_base() + "/proxy"
    # Version 1 on plain TCP; the connection then parks and wakes like any other.
    sub = rawmqtt.RawClient(server.port)
    sub.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n")
    sub.connect(uid("v1"))
    sub.send(rawmqtt.subscribe(1, [(topic, 0)]))
    sub.expect(rawmqtt.SUBACK)
    time.sleep(1.5)  # idle long enough to park
    # Version 2 (IPv6) on plain TCP.
    pub2 = rawmqtt.RawClient(server.port)
    pub2.send(v2_header("2001:db8::7", 5000))
    pub2.connect(uid("v2"))
    pub2.send(rawmqtt.publish(topic, b"from v2"))
    assert sub.expect(rawmqtt.PUBLISH).body.endswith(b"from v2")
    # Version 1, then TLS.
    raw = socket.create_connection(("127.0.0.1", tls), timeout=WAIT)
    raw.sendall(b"PROXY TCP4 198.51.100.3 10.0.0.1 777 8883\r\n")
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    t.sendall(rawmqtt.connect(uid("tls"), version=4))
    assert t.recv(4)[0] >> 4 == rawmqtt.CONNACK
    t.close()
    log = server.log()
    for peer in ["203.0.113.7:4242", "[2001:db8::7]:5000", "198.51.100.3:777"]:
        assert f"from {peer} as" in log, f"{peer} not in the log:\n{log}"
    # No header, or a broken one: closed; the others go on.
    assert closes(server.port, rawmqtt.connect(uid("plain"), version=4), 3)
    assert closes(server.port, b"PROXY TCP4 1.2.3.4\r\n", 3)
    assert closes(tls, client_hello(), 3)
    pub2.send(rawmqtt.publish(topic, b"still"))
    assert sub.expect(rawmqtt.PUBLISH).body.endswith(b"still")
    sub.close()
    pub2.close()


@pytest.mark.parametrize("address, host", [("::1", "::1"), ("localhost", "localhost")])
def test_tls_listener_on_ipv6_and_a_name(start_tinsel, certs, address, host):
    tls = free_port_number()
    start_tinsel(
        config=f'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
        f'[[listeners]]\naddress = "{address}"\nport = {tls}\ntransport = "tls"\n'
        f'certfile = "{certs}/server.crt"\nkeyfile = "{certs}/server.key"\n'
    )
    topic = topic_base() + "/v6"
    deadline = time.monotonic() + WAIT
    while True:
        r = subprocess.run(
            ["mosquitto_pub", "-h", host, "-p", str(tls), "--cafile", str(certs / "ca.crt"), "-t", topic, "-m", "x"],
            capture_output=True,
            timeout=WAIT,
        )
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, r.stderr
        time.sleep(0.1)


@kinds
def test_connect_in_the_same_segment_as_the_tls_finished(kind, start_listeners, certs):
    """A client may send CONNECT right behind its last handshake flight, in one TCP segment:
    the broker must read the CONNECT it already holds, not wait for more bytes."""
    ports = start_listeners(kind)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock = socket.create_connection(("127.0.0.1", ports.tls), timeout=WAIT)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "the broker closed during the handshake"
                incoming.write(data)
        # The client's Finished is still in `outgoing`: CONNECT joins it in one send.
        tls.write(rawmqtt.connect(uid("seg"), version=4))
        sock.sendall(outgoing.read())
        got = b""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                got += tls.read(4)
                if len(got) >= 4:
                    break
            except ssl.SSLWantReadError:
                assert time.monotonic() < deadline, "no CONNACK"
                data = sock.recv(65536)
                assert data, "the broker closed instead of answering CONNECT"
                incoming.write(data)
        assert got[0] >> 4 == rawmqtt.CONNACK and got[3] == 0, got
    finally:
        sock.close()


@kinds
def test_packets_before_a_tcp_close_without_close_notify_are_handled(kind, start_listeners, certs):
    """A client that writes its last messages and DISCONNECT, then closes TCP without a TLS
    close_notify: every message is delivered and the DISCONNECT counts (no will)."""
    ports = start_listeners(kind)
    topic = topic_base() + "/unclean"
    sub = rawmqtt.RawClient(ports.plain)
    sub.connect(uid("sub"))
    sub.send(rawmqtt.subscribe(1, [(topic + "/#", 0)]))
    sub.expect(rawmqtt.SUBACK)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    raw = socket.create_connection(("127.0.0.1", ports.tls), timeout=WAIT)
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    t.sendall(rawmqtt.connect(uid("pub"), version=4, will=(topic + "/will", b"gone", 0, False)))
    assert t.recv(4)[0] >> 4 == rawmqtt.CONNACK
    burst = b"".join(rawmqtt.publish(f"{topic}/m", str(i).encode()) for i in range(50))
    t.sendall(burst + rawmqtt.disconnect())
    # SSLSocket.shutdown closes the socket under TLS: no close_notify goes out.
    t.shutdown(socket.SHUT_RDWR)
    t.close()
    got = [sub.expect(rawmqtt.PUBLISH).body for _ in range(50)]
    assert [g.endswith(str(i).encode()) for i, g in enumerate(got)] == [True] * 50
    with pytest.raises(TimeoutError):
        sub.expect(rawmqtt.PUBLISH, timeout=1.5)  # no will
    sub.close()


@kinds
def test_a_certificate_username_needs_no_password_beside_a_password_file(
    kind, tinsel_bin, start_tinsel, start_mosquitto, certs, tmp_path
):
    """A common Mosquitto set-up: passwords on the plain listener, client certificates (their
    CN as the user name) on the TLS one. The certificate is the credential: no password is
    asked for, while the plain listener still checks passwords."""
    pw = tmp_path / "passwd"
    subprocess.run([str(tinsel_bin), "passwd", "-c", "-b", str(pw), "alice", "secret"],
                   check=True, timeout=WAIT)
    tls = free_port_number()
    c = certs
    if kind == "tinsel":
        server = start_tinsel(config=(
            f'[[listeners]]\naddress = "127.0.0.1"\nport = {{port}}\n'
            f'[[listeners]]\naddress = "127.0.0.1"\nport = {tls}\ntransport = "tls"\n'
            f'certfile = "{c}/server.crt"\nkeyfile = "{c}/server.key"\ncafile = "{c}/ca.crt"\n'
            f"require_certificate = true\nuse_identity_as_username = true\n"
            f'[access]\npassword_file = "{pw}"\n'))
    else:
        server = start_mosquitto(
            f"user root\nallow_anonymous false\npassword_file {pw}\nlistener {tls} 127.0.0.1\n"
            f"certfile {c}/server.crt\nkeyfile {c}/server.key\ncafile {c}/ca.crt\n"
            f"require_certificate true\nuse_identity_as_username true\n")
    _wait_port(tls)
    assert pub(tls, certs, "cert/x", "1", cert="client").returncode == 0
    plain = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(server.port), "-t", "x", "-m", "1"]
    assert subprocess.run(plain + ["-u", "alice", "-P", "secret"], timeout=WAIT).returncode == 0
    assert subprocess.run(plain + ["-u", "alice", "-P", "wrong"], capture_output=True,
                          timeout=WAIT).returncode != 0
    assert subprocess.run(plain, capture_output=True, timeout=WAIT).returncode != 0

    # paho-mqtt, MQTT 5: the certificate alone on the TLS listener, where it reads its own
    # message back; a user name and password on the plain one, the wrong password refused
    # with 0x87 Not authorized, as Mosquitto refuses it.
    def paho_rc(port, tls_cert=None, password=None):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid("p"), protocol=mqtt.MQTTv5)
        if tls_cert:
            c.tls_set(ca_certs=str(c_dir / "ca.crt"), certfile=str(c_dir / f"{tls_cert}.crt"),
                      keyfile=str(c_dir / f"{tls_cert}.key"))
        if password is not None:
            c.username_pw_set("alice", password)
        codes, got = [], []
        c.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc.value)
        c.on_message = lambda _c, _u, m: got.append(m.payload)
        c.connect("localhost", port)
        c.loop_start()
        wait_for(lambda: codes, "a CONNACK")
        return c, codes[0], got

    c_dir = certs
    c, rc, got = paho_rc(tls, tls_cert="client")
    assert rc == 0
    c.subscribe("cert/paho", 1)
    time.sleep(0.3)
    c.publish("cert/paho", b"by certificate", 1)
    wait_for(lambda: got == [b"by certificate"], "the message back over mutual TLS")
    c.loop_stop()
    c.disconnect()
    good, rc, _ = paho_rc(server.port, password="secret")
    assert rc == 0
    good.loop_stop()
    good.disconnect()
    bad, rc, _ = paho_rc(server.port, password="wrong")
    assert rc == 0x87, hex(rc)
    bad.loop_stop()

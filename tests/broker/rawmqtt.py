"""A tiny hand-rolled MQTT packet writer/reader for the tests paho cannot express.

Only what the broker tests need: CONNECT (3.1, 3.1.1, 5.0), PUBLISH, the QoS acks, SUBSCRIBE,
PINGREQ, DISCONNECT, and a reader that splits the stream into packets and parses CONNACK,
PUBLISH, SUBACK and DISCONNECT. Properties are written from raw (id, bytes) pairs.
"""

import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def utf8(s) -> bytes:
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def props(*items) -> bytes:
    """Encode MQTT 5 properties from (id, already-encoded value) pairs, with the length prefix."""
    body = b"".join(bytes([pid]) + val for pid, val in items)
    return varint(len(body)) + body


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(
    client_id="",
    version=4,
    clean=True,
    keepalive=60,
    will=None,
    connect_props=b"",
    protocol_name=None,
    user=None,
) -> bytes:
    """will: (topic, payload, qos, retain[, will_props_bytes]); user: (name, password bytes)."""
    if protocol_name is None:
        protocol_name = "MQIsdp" if version == 3 else "MQTT"
    flags = 0x02 if clean else 0
    payload = utf8(client_id)
    if will is not None:
        topic, msg, qos, retain = will[:4]
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == 5:
            payload += will[4] if len(will) > 4 else props()
        payload += utf8(topic) + utf8(msg)
    if user is not None:
        flags |= 0xC0
        payload += utf8(user[0]) + utf8(user[1])
    body = utf8(protocol_name) + bytes([version, flags]) + u16(keepalive)
    if version == 5:
        body += connect_props or props()
    return packet(CONNECT, 0, body + payload)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, version=4, pub_props=b"") -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos:
        body += u16(pid)
    if version == 5:
        body += pub_props or props()
    return packet(PUBLISH, flags, body + (payload.encode() if isinstance(payload, str) else payload))


def ack(ptype: int, pid: int) -> bytes:
    return packet(ptype, 0x02 if ptype == PUBREL else 0, u16(pid))


def subscribe(pid, filters, version=4, sub_props=b"") -> bytes:
    """filters: list of (filter, options byte)."""
    body = u16(pid) + (sub_props or props() if version == 5 else b"")
    for f, opts in filters:
        body += utf8(f) + bytes([opts])
    return packet(SUBSCRIBE, 0x02, body)


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect(version=4, reason=0, disc_props=b"") -> bytes:
    if version == 5:
        return packet(DISCONNECT, 0, bytes([reason]) + (disc_props or props()))
    return packet(DISCONNECT, 0, b"")


class Packet:
    def __init__(self, first: int, body: bytes, version: int):
        self.type = first >> 4
        self.flags = first & 0x0F
        self.body = body
        self.version = version

    # CONNACK
    @property
    def session_present(self) -> bool:
        return bool(self.body[0] & 1)

    @property
    def return_code(self) -> int:
        return self.body[1]

    # DISCONNECT (v5)
    @property
    def reason(self) -> int:
        return self.body[0] if self.body else 0

    # PUBLISH
    def publish_fields(self):
        """(topic, qos, retain, dup, packet id or None, payload) of a PUBLISH."""
        qos = (self.flags >> 1) & 3
        tlen = struct.unpack("!H", self.body[:2])[0]
        topic = self.body[2 : 2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", self.body[pos : pos + 2])[0]
            pos += 2
        if self.version == 5:
            plen, n = read_varint(self.body, pos)
            pos += n + plen
        return topic, qos, bool(self.flags & 1), bool(self.flags & 8), pid, self.body[pos:]

    @property
    def packet_id(self) -> int:
        return struct.unpack("!H", self.body[:2])[0]

    def __repr__(self):
        return f"Packet(type={self.type}, flags={self.flags:#x}, body={self.body!r})"


def read_varint(buf: bytes, pos: int):
    mult, value, n = 1, 0, 0
    while True:
        b = buf[pos + n]
        value += (b & 0x7F) * mult
        mult *= 128
        n += 1
        if not b & 0x80:
            return value, n


class RawClient:
    """A TCP connection that speaks MQTT by hand. Every read is bounded by a timeout."""

    def __init__(self, port: int, version: int = 4, timeout: float = 5.0):
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on EOF/reset. Raises TimeoutError at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no packet before the deadline") from e
        except (ConnectionResetError, BrokenPipeError):
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def recv(self, timeout: float = 5.0):
        """The next packet, or None if the broker closed the connection first."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, n = read_varint(self.buf, 1)
                except IndexError:
                    length = None
                if length is not None and len(self.buf) >= 1 + n + length:
                    first = self.buf[0]
                    body = self.buf[1 + n : 1 + n + length]
                    self.buf = self.buf[1 + n + length :]
                    return Packet(first, body, self.version)
            if not self._fill(deadline):
                return None

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        p = self.recv(timeout)
        assert p is not None, f"connection closed while waiting for packet type {ptype}"
        assert p.type == ptype, f"expected packet type {ptype}, got {p!r}"
        return p

    def connect(self, client_id="", clean=True, keepalive=60, **kw) -> Packet:
        self.send(connect(client_id, self.version, clean, keepalive, **kw))
        return self.expect(CONNACK)

    def wait_closed(self, timeout: float = 5.0):
        """Read until the broker closes; returns the packets seen before the close."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.01, deadline - time.monotonic()))
            if p is None:
                return seen
            seen.append(p)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

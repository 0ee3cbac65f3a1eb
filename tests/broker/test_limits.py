"""Limits on what one client may send, with their exact reason codes over 3.1.1 and 5.0.

Topic length and levels, subscriptions per session, the publish rate (throttled or
disconnected), a packet that arrives a byte at a time, and what the specification forbids a
client to send. A bystander keeps receiving while another client is over its limits.
Mosquitto has none of these limits, and does not enforce the two MUSTs tested at the end.
"""

import subprocess
import threading
import time

import pytest

import rawmqtt as raw
from brokertest import tinsel_config, uid

# MQTT 5 reason codes.
PROTOCOL_ERROR, KEEP_ALIVE_TIMEOUT = 0x82, 0x8D
TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID = 0x8F, 0x90
MESSAGE_RATE_TOO_HIGH, QUOTA_EXCEEDED = 0x96, 0x97


def limited(start_tinsel, **limits):
    body = "[limits]\n" + "".join(
        f"{k} = {v!r}\n".replace("'", '"') for k, v in limits.items()
    )
    return start_tinsel(config=tinsel_config("{port}", body))


def client(server, version, name=None, user=None):
    c = raw.RawClient(server.port, version=version)
    c.send(raw.connect(name or uid("lim"), version, user=user))
    ack = c.expect(raw.CONNACK)
    assert ack.return_code == 0, ack
    return c


def suback_codes(c, filters, pid=1):
    c.send(raw.subscribe(pid, [(f, 0) for f in filters], version=c.version))
    ack = c.expect(raw.SUBACK)
    body = ack.body[2:]
    if c.version == 5:
        plen, n = raw.read_varint(body, 0)
        body = body[n + plen :]
    return list(body)


def ack_reason(p):
    """The reason code of a PUBACK / PUBREC (0 when the short form leaves it out)."""
    return p.body[2] if len(p.body) > 2 else 0


def closed_with(c):
    """The DISCONNECT reason the broker closed `c` with (None: closed without one)."""
    seen = c.wait_closed(timeout=10)
    disconnects = [p for p in seen if p.type == raw.DISCONNECT]
    return disconnects[0].reason if disconnects else None


def test_topic_length_and_levels(start_tinsel):
    srv = limited(start_tinsel, max_topic_length=24, max_topic_levels=3)
    deep, long_ = "a/b/c/d", "x" * 25
    v5 = client(srv, 5)
    # Within the limits: accepted.
    v5.send(raw.publish("a/b/c", b"m", qos=1, pid=1, version=5))
    assert ack_reason(v5.expect(raw.PUBACK)) < 0x80
    # QoS 1 and 2 over: the acknowledgement says 0x90 and the client stays connected.
    v5.send(raw.publish(deep, b"m", qos=1, pid=2, version=5))
    assert ack_reason(v5.expect(raw.PUBACK)) == TOPIC_NAME_INVALID
    v5.send(raw.publish(long_, b"m", qos=2, pid=3, version=5))
    assert ack_reason(v5.expect(raw.PUBREC)) == TOPIC_NAME_INVALID
    # Filters over: refused one by one.
    assert suback_codes(v5, [deep, "a/+", "$share/g/a/b/c", long_]) == [
        TOPIC_FILTER_INVALID,
        0,
        0,
        TOPIC_FILTER_INVALID,
    ]
    # QoS 0 over: no acknowledgement to say it in, so DISCONNECT 0x90.
    v5.send(raw.publish(deep, b"m", version=5))
    assert closed_with(v5) == TOPIC_NAME_INVALID

    v3 = client(srv, 4)
    assert suback_codes(v3, [deep, "a/b"]) == [0x80, 0]
    v3.send(raw.publish(deep, b"m", qos=1, pid=1))
    assert v3.wait_closed() == []

    # A will topic over the limits: refused at CONNECT.
    w = raw.RawClient(srv.port, version=5)
    ack = w.connect(uid("will"), will=(deep, b"bye", 0, False))
    assert ack.return_code == TOPIC_NAME_INVALID


@pytest.mark.parametrize("version,over", [(5, QUOTA_EXCEEDED), (4, 0x80)])
def test_max_subscriptions(start_tinsel, version, over):
    srv = limited(start_tinsel, max_subscriptions=2)
    c = client(srv, version)
    assert suback_codes(c, ["a", "b", "c"]) == [0, 0, over]
    # One the session holds is replaced, not counted twice.
    assert suback_codes(c, ["b", "d"], pid=2) == [0, over]
    c.send(raw.packet(raw.UNSUBSCRIBE, 2, raw.u16(3) + (b"\x00" if version == 5 else b"") + raw.utf8("a")))
    c.expect(raw.UNSUBACK)
    assert suback_codes(c, ["d"], pid=4) == [0]


class Bystander:
    """A subscriber on its own topic, fed by a well-behaved publisher, counting what it gets."""

    def __init__(self, server, count, gap=0.0, user=None):
        self.topic = uid("bystander")
        self.sub = client(server, 5, user=user)
        assert suback_codes(self.sub, [self.topic]) == [0]
        self.pub = client(server, 4, user=user)
        self.count = count
        # Time between its messages: the bystander keeps within the rate limits itself.
        self.gap = gap

    def run_while(self, during):
        """Publishes `count` QoS 1 messages one by one while `during()` runs in a thread;
        returns the payloads the subscriber got."""
        t = threading.Thread(target=during)
        t.start()
        for i in range(self.count):
            self.pub.send(raw.publish(self.topic, b"%d" % i, qos=1, pid=i + 1))
            self.pub.expect(raw.PUBACK)
            time.sleep(self.gap)
        got = []
        while len(got) < self.count:
            p = self.sub.expect(raw.PUBLISH)
            got.append(p.publish_fields()[5])
        t.join(timeout=30)
        assert not t.is_alive()
        return got


@pytest.mark.parametrize("version", [5, 4])
def test_over_rate_publisher_is_disconnected_bystander_unharmed(start_tinsel, version):
    srv = limited(
        start_tinsel, max_publish_rate=20, publish_burst=5, publish_rate_action="disconnect"
    )
    reasons = []

    def flood():
        # Ten over-rate publishers one after the other, each disconnected.
        for _ in range(10):
            c = client(srv, version)
            c.send(b"".join(raw.publish("flood", b"x" * 10, version=version) for _ in range(50)))
            reasons.append(closed_with(c))

    got = Bystander(srv, 20, gap=0.08).run_while(flood)
    assert got == [b"%d" % i for i in range(20)]
    assert reasons == [MESSAGE_RATE_TOO_HIGH if version == 5 else None] * 10


def test_over_rate_publisher_is_throttled_and_loses_nothing(start_tinsel):
    rate, burst, n = 20, 5, 40
    srv = limited(start_tinsel, max_publish_rate=rate, publish_burst=burst)
    sub = client(srv, 5)
    topic = uid("throttled")
    assert suback_codes(sub, [topic]) == [0]
    took = {}

    def flood():
        c = client(srv, 5)
        t0 = time.monotonic()
        c.send(b"".join(raw.publish(topic, b"%d" % i, version=5) for i in range(n)))
        # Still connected: it answers the PINGREQ behind the messages once it reads it.
        c.send(raw.pingreq())
        c.expect(raw.PINGRESP, timeout=30)
        took["s"] = time.monotonic() - t0

    assert Bystander(srv, 20, gap=0.08).run_while(flood) == [b"%d" % i for i in range(20)]
    got = [sub.expect(raw.PUBLISH).publish_fields()[5] for _ in range(n)]
    assert got == [b"%d" % i for i in range(n)]
    # A lower bound only (a slow machine can only make it longer): the broker cannot have
    # read the messages after the burst, and the PINGREQ after them, faster than the rate.
    assert took["s"] >= (n - burst) / rate * 0.9


def trickle(c, data, gap=0.2):
    """Sends `data` a byte at a time from a thread, until it is sent or the socket fails."""

    def run():
        for b in data:
            try:
                c.sock.sendall(bytes([b]))
            except OSError:
                return
            time.sleep(gap)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("version", [5, 4])
def test_packet_trickled_a_byte_at_a_time_is_closed(start_tinsel, version):
    srv = limited(start_tinsel, packet_timeout=1, connect_timeout=60)
    c = client(srv, version)
    # A PUBLISH of 100 bytes, a byte every 0.2 s: closed about a second after its first byte
    # (not trickled to the end: the sender stops after 40 bytes, 8 s).
    t = trickle(c, raw.publish("t", b"x" * 90, version=version)[:40])
    assert closed_with(c) == (KEEP_ALIVE_TIMEOUT if version == 5 else None)
    t.join(timeout=10)

    # The same during CONNECT: closed without a CONNACK, long before the CONNECT timeout.
    late = raw.RawClient(srv.port, version=version)
    t = trickle(late, raw.connect(uid("trickle"), version)[:20])
    assert late.wait_closed(timeout=10) == []
    t.join(timeout=10)


# Mosquitto 2.0 leaves both of these connections open (the first message is published,
# the second CONNECT accepted): Tinsel enforces the specification's MUSTs.


def test_subscription_identifier_from_a_client_is_a_protocol_error(start_tinsel):
    srv = start_tinsel()
    c = client(srv, 5)
    c.send(raw.publish("t", b"m", version=5, pub_props=raw.props((0x0B, raw.varint(4)))))
    assert closed_with(c) == PROTOCOL_ERROR


def test_authentication_data_without_method_is_a_protocol_error(start_tinsel):
    srv = start_tinsel()
    c = raw.RawClient(srv.port, version=5)
    c.send(raw.connect(uid("auth"), 5, connect_props=raw.props((0x16, raw.utf8("data")))))
    seen = c.wait_closed()
    assert [(p.type, p.return_code) for p in seen] == [(raw.CONNACK, PROTOCOL_ERROR)]


@pytest.mark.parametrize("broker", ["tinsel", "mosquitto"])
def test_bystander_keeps_receiving_through_a_flood_of_bad_logins(
    broker, start_tinsel, start_mosquitto, tinsel_bin, tmp_path
):
    pw = tmp_path / "passwd"
    made = subprocess.run(
        [str(tinsel_bin), "passwd", "-c", "-b", str(pw), "elf", "cocoa"], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    pw.chmod(0o644)
    if broker == "tinsel":
        access = f'[access]\nallow_anonymous = false\npassword_file = "{pw}"\n'
        srv = start_tinsel(config=tinsel_config("{port}", access))
    else:
        srv = start_mosquitto(f"user root\nallow_anonymous false\npassword_file {pw}\n")
    codes = []

    def bad_logins(version):
        for _ in range(25):
            c = raw.RawClient(srv.port, version=version)
            creds = raw.connect(uid("bad"), version, user=("elf", b"wrong"))
            c.send(creds)
            seen = c.wait_closed(timeout=30)
            codes.append((version, [p.return_code for p in seen if p.type == raw.CONNACK]))
            c.close()

    def flood():
        threads = [threading.Thread(target=bad_logins, args=(v,)) for v in (4, 5, 4, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    bystander = Bystander(srv, 30, gap=0.02, user=("elf", b"cocoa"))
    assert bystander.run_while(flood) == [b"%d" % i for i in range(30)]
    # Every bad login refused, as Mosquitto refuses it: 3.1.1 "not authorised", 5.0 0x87.
    assert len(codes) == 100
    assert all(got == [5 if v == 4 else 0x87] for v, got in codes), codes

"""Round trips with Mosquitto's own command-line clients: mosquitto_pub, mosquitto_sub, mosquitto_rr."""

import threading

import pytest

from brokertest import V5, prop, props, run_cli, topic_base, uid

VERSIONS = ["mqttv31", "mqttv311", "mqttv5"]


def _sub_args(server, *args):
    return ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(server.port), *args]


def _pub(server, *args, input=None):
    r = run_cli(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(server.port), *args], input=input)
    assert r.returncode == 0, r.stderr
    return r


def _start_synced_sub(server, sub_proc, connected, *args):
    """Start mosquitto_sub with an extra sync topic; return once it demonstrably receives."""
    token = uid("sync")
    sp = sub_proc(_sub_args(server, *args, "-t", f"sync/{token}"))
    helper = connected(server)
    for _ in range(50):
        helper.publish(f"sync/{token}", token.encode(), qos=0)
        try:
            ln = sp.lines.get(timeout=0.1)
        except Exception:
            continue
        assert ln is not None, f"mosquitto_sub exited: {sp.proc.stderr.read()!r}"
        if token.encode() in ln:
            break
    else:
        raise AssertionError("mosquitto_sub never received its sync message")
    sp.token = token.encode()
    return sp


def _line(sp):
    while True:
        ln = sp.line()
        if sp.token not in ln:
            return ln


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS)
def test_pub_sub_round_trip(any_broker, sub_proc, connected, version, qos):
    base = topic_base()
    sp = _start_synced_sub(any_broker, sub_proc, connected, "-V", version, "-q", str(qos), "-v", "-t", f"{base}/#")
    _pub(any_broker, "-V", version, "-q", str(qos), "-t", f"{base}/a/b", "-m", f"hello {version} q{qos}")
    assert _line(sp) == f"{base}/a/b hello {version} q{qos}".encode()
    sp.no_more()


@pytest.mark.parametrize("version", VERSIONS)
def test_format_shows_granted_qos_and_retain(any_broker, sub_proc, connected, version):
    base = topic_base()
    sp = _start_synced_sub(any_broker, sub_proc, connected, "-V", version, "-q", "1", "-F", "%t|%q|%r|%p", "-t", f"{base}/+")
    _pub(any_broker, "-V", version, "-q", "2", "-t", f"{base}/x", "-m", "q2-to-q1")
    assert _line(sp) == f"{base}/x|1|0|q2-to-q1".encode()
    _pub(any_broker, "-V", version, "-q", "0", "-t", f"{base}/y", "-m", "q0")
    assert _line(sp) == f"{base}/y|0|0|q0".encode()


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_retained_with_cli(any_broker, version):
    t = topic_base() + "/ret"
    _pub(any_broker, "-V", version, "-r", "-q", "1", "-t", t, "-m", "first")
    _pub(any_broker, "-V", version, "-r", "-q", "1", "-t", t, "-m", "stored")
    sub = _sub_args(any_broker, "-V", version, "-t", t, "-C", "1", "-W", "5", "-F", "%t|%r|%p")
    r = run_cli(sub, timeout=8)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{t}|1|stored\n".encode()
    # Deleted with an empty retained message: a fresh subscriber gets nothing (-W ends it).
    _pub(any_broker, "-V", version, "-r", "-n", "-t", t)
    r = run_cli(_sub_args(any_broker, "-V", version, "-t", t, "-W", "1", "-v"), timeout=5)
    assert r.stdout == b""


def test_pub_lines_from_stdin(any_broker, sub_proc, connected):
    base = topic_base()
    sp = _start_synced_sub(any_broker, sub_proc, connected, "-q", "1", "-t", f"{base}/lines")
    _pub(any_broker, "-q", "1", "-t", f"{base}/lines", "-l", input=b"one\ntwo\nthree\n")
    assert [_line(sp) for _ in range(3)] == [b"one", b"two", b"three"]
    sp.no_more()


def test_sub_persistent_session_with_cli(any_broker):
    t = topic_base() + "/persist"
    cid = uid("clisub")
    # Create the session: subscribe with clean session off, then leave (-W ends after 1s).
    r = run_cli(_sub_args(any_broker, "-c", "-i", cid, "-q", "1", "-t", t, "-W", "1"), timeout=5)
    assert r.stdout == b""
    for i in range(3):
        _pub(any_broker, "-q", "1", "-t", t, "-m", f"queued-{i}")
    r = run_cli(_sub_args(any_broker, "-c", "-i", cid, "-q", "1", "-t", t, "-C", "3", "-W", "5"), timeout=8)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"queued-0\nqueued-1\nqueued-2\n"


def test_v5_properties_from_mosquitto_pub(any_broker, connected):
    t = topic_base() + "/props"
    sub = connected(any_broker, protocol=V5)
    sub.subscribe(t, qos=1)
    _pub(
        any_broker,
        "-V", "mqttv5", "-q", "1", "-t", t, "-m", "with-props",
        "-D", "publish", "user-property", "color", "red",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "reply/here",
        "-D", "publish", "correlation-data", "abc123",
        "-D", "publish", "payload-format-indicator", "1",
        "-D", "publish", "message-expiry-interval", "120",
    )  # fmt: skip
    m = sub.expect()
    assert (m.topic, m.payload, m.qos) == (t, b"with-props", 1)
    assert prop(m, "UserProperty") == [("color", "red")]
    assert prop(m, "ContentType") == "text/plain"
    assert prop(m, "ResponseTopic") == "reply/here"
    assert prop(m, "CorrelationData") == b"abc123"
    assert prop(m, "PayloadFormatIndicator") == 1
    assert 118 <= prop(m, "MessageExpiryInterval") <= 120


def test_mosquitto_rr_request_response(any_broker, connected):
    req = topic_base() + "/req"
    responder = connected(any_broker, protocol=V5)
    responder.subscribe(req, qos=1)
    stop = threading.Event()

    def respond():
        while not stop.is_set():
            try:
                m = responder.messages.get(timeout=0.1)
            except Exception:
                continue
            rt = prop(m, "ResponseTopic")
            if rt:
                p = props(CorrelationData=prop(m, "CorrelationData") or b"")
                responder.publish(rt, b"pong:" + m.payload, qos=1, properties=p, wait=False)

    th = threading.Thread(target=respond, daemon=True)
    th.start()
    try:
        r = run_cli(
            ["mosquitto_rr", "-h", "127.0.0.1", "-p", str(any_broker.port), "-t", req, "-e", req + "/resp",
             "-m", "ping", "-W", "5"],
            timeout=8,
        )  # fmt: skip
    finally:
        stop.set()
        th.join(2)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"pong:ping\n"


def test_wareville_lights_topic(any_broker, connected):
    """The lab's documented command works against the broker."""
    t = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz"
    lights = connected(any_broker)
    lights.subscribe(t, qos=0)
    _pub(any_broker, "-t", t, "-m", "on")
    m = lights.expect()
    assert (m.topic, m.payload) == (t, b"on")


def test_remove_retained_with_mosquitto_sub(any_broker, connected):
    base = topic_base()
    for i in range(3):
        _pub(any_broker, "-r", "-q", "1", "-t", f"{base}/{i}", "-m", f"r{i}")
    r = run_cli(_sub_args(any_broker, "-t", f"{base}/#", "--remove-retained", "--retained-only", "-W", "1"), timeout=6)
    assert sorted(r.stdout.split()) == [b"r0", b"r1", b"r2"]
    late = connected(any_broker)
    late.subscribe(f"{base}/#", qos=1)
    late.expect_none(0.5)


def test_large_payload_from_file(any_broker, connected, tmp_path):
    t = topic_base() + "/file"
    data = bytes(range(256)) * 4096  # 1 MiB
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    sub = connected(any_broker)
    sub.subscribe(t, qos=1)
    _pub(any_broker, "-q", "1", "-t", t, "-f", str(f))
    m = sub.expect(timeout=10)
    assert m.payload == data


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_sub_will_fires_when_killed(any_broker, sub_proc, connected, version):
    t = topic_base() + "/clientwill"
    watcher = connected(any_broker)
    watcher.subscribe(t, qos=1)
    sp = _start_synced_sub(
        any_broker, sub_proc, connected, "-V", version, "-t", topic_base(),
        "--will-topic", t, "--will-payload", "sub-died", "--will-qos", "1",
    )  # fmt: skip
    watcher.expect_none(0.2)
    sp.proc.kill()
    m = watcher.expect()
    assert (m.topic, m.payload, m.qos) == (t, b"sub-died", 1)

"""tinsel pub/sub against Mosquitto's broker and clients, in both directions, and the
Wareville scenario's exact command."""

import pytest

from clienttest import Proc, assert_no_panic, run, wait_subscribed

LIGHTS = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz"


def test_scenario_command_reaches_mosquitto_sub(mosq, tinsel):
    sub = Proc(["mosquitto_sub", "-h", "127.0.0.1", "-p", mosq.port, "-t", LIGHTS, "-C", "1"])
    wait_subscribed(mosq, 1)
    # The scenario's exact command, plus -p for the test broker's port: -h localhost must
    # reach the broker on 127.0.0.1.
    rc, out, err = run(tinsel("pub", "-h", "localhost", "-t", LIGHTS, "-m", "on", "-p", mosq.port))
    assert rc == 0, err
    assert out == b"" and err == b""
    rc, out, _ = sub.wait()
    assert rc == 0
    assert out == b"on\n"


def test_scenario_command_on_tinsel_broker(tinsel_broker, tinsel):
    sub = Proc(["mosquitto_sub", "-h", "127.0.0.1", "-p", tinsel_broker.port, "-t", LIGHTS, "-C", "1"])
    wait_subscribed(tinsel_broker, 1)
    rc, _, err = run(tinsel("pub", "-h", "localhost", "-p", tinsel_broker.port, "-t", LIGHTS, "-m", "on"))
    assert rc == 0, err
    rc, out, _ = sub.wait()
    assert (rc, out) == (0, b"on\n")


@pytest.mark.parametrize("version", ["31", "311", "5", "mqttv31", "mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_tinsel_pub_to_mosquitto_sub(mosq, tinsel, version, qos):
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "t/#", "-q", "2", "-C", "1", "-F", "%t %q %p"])
    wait_subscribed(mosq, 1)
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-V", version, "-q", qos, "-t", "t/x", "-m", "hello"))
    assert rc == 0, err
    rc, out, _ = sub.wait()
    assert out == f"t/x {qos} hello\n".encode()


@pytest.mark.parametrize("version", ["31", "311", "5"])
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_mosquitto_pub_to_tinsel_sub(mosq, tinsel, version, qos):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-V", version, "-t", "t/#", "-q", "2", "-C", "2", "-v"))
    wait_subscribed(mosq, 1)
    for m in ("one", "two"):
        rc, _, _ = run(["mosquitto_pub", "-p", mosq.port, "-q", qos, "-t", "t/y", "-m", m])
        assert rc == 0
    rc, out, err = sub.wait()
    assert rc == 0, err
    assert out == b"t/y one\nt/y two\n"


def test_tinsel_pub_sub_on_both_brokers(any_broker, tinsel):
    sub = Proc(tinsel("sub", "-p", any_broker.port, "-t", "a/+", "-C", "3", "-v", "-q", "1"))
    wait_subscribed(any_broker, 1)
    for i, q in enumerate(["0", "1", "2"]):
        rc, _, err = run(tinsel("pub", "-p", any_broker.port, "-t", f"a/{i}", "-m", f"m{i}", "-q", q))
        assert rc == 0, err
    rc, out, err = sub.wait()
    assert rc == 0, err
    assert out == b"a/0 m0\na/1 m1\na/2 m2\n"


def test_mosquitto_clients_on_tinsel_broker(tinsel_broker):
    sub = Proc(["mosquitto_sub", "-p", tinsel_broker.port, "-t", "m/#", "-C", "1", "-v", "-q", "2"])
    wait_subscribed(tinsel_broker, 1)
    rc, _, _ = run(["mosquitto_pub", "-p", tinsel_broker.port, "-t", "m/1", "-m", "x", "-q", "2"])
    assert rc == 0
    rc, out, _ = sub.wait()
    assert (rc, out) == (0, b"m/1 x\n")


def test_lines_past_65535_at_qos1(start_mosquitto, tinsel):
    """-l keeps going past 65,535 messages at QoS 1: packet identifiers are reused."""
    from clienttest import MOSQ_LOG
    # Unbounded queue for the subscriber, so the broker drops nothing when it lags.
    mosq = start_mosquitto(MOSQ_LOG + "max_queued_messages 0\n")
    n = 66_000
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "many", "-q", "1", "-C", str(n)])
    wait_subscribed(mosq, 1)
    data = "".join(f"{i}\n" for i in range(n)).encode()
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "many", "-q", "1", "-l"), input=data, timeout=240)
    assert rc == 0, err
    assert_no_panic(err)
    rc, out, _ = sub.wait(timeout=120)
    assert rc == 0
    lines = out.split(b"\n")[:-1]
    assert len(lines) == n
    assert lines[0] == b"0" and lines[-1] == str(n - 1).encode()


def test_lines_at_qos2(start_mosquitto, tinsel):
    from clienttest import MOSQ_LOG
    # Unbounded queue: with Mosquitto's default (1,000 messages) a subscriber that lags
    # behind loses messages even at QoS 2, and `-C` then never counts to the end.
    mosq = start_mosquitto(MOSQ_LOG + "max_queued_messages 0\n")
    n = 3000
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "q2", "-q", "2", "-C", str(n)])
    wait_subscribed(mosq, 1)
    data = "".join(f"line {i}\n" for i in range(n)).encode()
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "q2", "-q", "2", "-l"), input=data, timeout=120)
    assert rc == 0, err
    rc, out, _ = sub.wait(timeout=60)
    assert out == data
    assert rc == 0

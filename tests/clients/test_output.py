"""`tinsel sub` output is byte-identical to mosquitto_sub's for the same messages: both
subscribe on the same broker with the same options, the same messages are published, and
their standard outputs are compared."""

import re

import pytest

from clienttest import Proc, run, wait_subscribed

TST = re.compile(rb'"tst":(\s*)"[^"]*"')


def publish_all(port, v5):
    """A mix of messages: text, empty, binary, multi-line, UTF-8, JSON, QoS 1 and 2, and
    (MQTT 5) properties."""
    pubs = [
        ["-t", "out/text", "-m", "hello world"],
        ["-t", "out/empty", "-n"],
        ["-t", "out/multi", "-m", "line one\nline two"],
        ["-t", "out/utf8", "-m", "Fröhliche Weihnachten ☃"],
        ["-t", "out/json", "-m", '{"a":27.0,"b":[1,"x",true,null],"c":{"d":0.5},"e":"q\\"u"}'],
        ["-t", "out/q1", "-m", "at least once", "-q", "1"],
        ["-t", "out/q2", "-m", "exactly once", "-q", "2"],
        ["-t", "out/quote", "-m", 'say "hi"\t\\ done'],
    ]
    for args in pubs:
        rc, _, err = run(["mosquitto_pub", "-p", port, *(["-V", "5"] if v5 else []), *args])
        assert rc == 0, err
    rc, _, err = run(["mosquitto_pub", "-p", port, "-t", "out/bin", "-s"], input=bytes(range(256)))
    assert rc == 0, err
    if v5:
        rc, _, err = run([
            "mosquitto_pub", "-p", port, "-V", "5", "-t", "out/props", "-m", "with properties",
            "-D", "publish", "payload-format-indicator", "1",
            "-D", "publish", "content-type", "text/plain",
            "-D", "publish", "response-topic", "out/reply",
            "-D", "publish", "correlation-data", "abc123",
            "-D", "publish", "user-property", "k1", "v1",
            "-D", "publish", "user-property", "k2", "v2",
        ])
        assert rc == 0, err
    return len(pubs) + 1 + (1 if v5 else 0)


FORMATS = [
    [],
    ["-v"],
    ["-v", "-N"],
    ["-N"],
    ["-F", "%t|%p|%l|%q|%r|%m|%x|%X"],
    ["-F", r"[%5t][%-5t][%.2t][%3.4t][%05l][%-5l][%05m][%010x][%-6X][%3p][%05p][%-4q]\t\\@@%%\e\a\0|"],
    ["-F", "%j"],
    ["-F", "%J"],
    ["-F", "%j", "--pretty"],
    ["-F", "%J", "--pretty"],
    ["-F", "%7.3t %-10l|%10.4p|"],
]

V5_FORMATS = [
    ["-F", "%A|%C|%D|%E|%F|%P|%R|%S|%t|%p"],
    ["-F", "[%5A][%-5C][%.3C][%05F][%-3S][%10R]"],
    ["-v"],
    ["-F", "%j"],
]


def compare(mosq, tinsel, opts, v5, retained_first=False):
    version = ["-V", "5"] if v5 else []
    extra = ["-D", "subscribe", "subscription-identifier", "5"] if v5 else []
    if retained_first:
        rc, _, _ = run(["mosquitto_pub", "-p", mosq.port, "-t", "out/retained", "-m", "stale", "-r"])
        assert rc == 0
    expected = (1 if retained_first else 0) + (10 if v5 else 9)
    common = ["-p", mosq.port, "-t", "out/#", "-q", "2", "-C", str(expected), *version, *extra, *opts]
    ref = Proc(["mosquitto_sub", *common])
    ours = Proc(tinsel("sub", *common))
    wait_subscribed(mosq, 2)
    assert publish_all(mosq.port, v5) + (1 if retained_first else 0) == expected
    rc_ref, out_ref, err_ref = ref.wait()
    rc_ours, out_ours, err_ours = ours.wait()
    out_ref, out_ours = TST.sub(rb'"tst":\1"T"', out_ref), TST.sub(rb'"tst":\1"T"', out_ours)
    assert out_ours == out_ref
    assert err_ours == err_ref
    assert rc_ours == rc_ref == 0


@pytest.mark.parametrize("opts", FORMATS, ids=lambda o: " ".join(o) or "payload")
def test_output_identical_v311(mosq, tinsel, opts):
    compare(mosq, tinsel, opts, v5=False, retained_first=True)


@pytest.mark.parametrize("opts", V5_FORMATS, ids=lambda o: " ".join(o))
def test_output_identical_v5_properties(mosq, tinsel, opts):
    compare(mosq, tinsel, opts, v5=True)


def test_time_fields_shape(mosq, tinsel):
    """Time fields cannot be compared byte for byte; check their shape instead."""
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "tm", "-C", "1", "-F", "%I|%U|@Y-@m-@d|@N|%j"))
    wait_subscribed(mosq, 1)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "tm", "-m", "x"])
    rc, out, _ = sub.wait()
    assert rc == 0
    assert re.fullmatch(
        rb'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}\|\d+\.\d{9}\|\d{4}-\d\d-\d\d\|\d{9}\|'
        rb'\{"tst":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}","topic":"tm","qos":0,"retain":0,'
        rb'"payloadlen":1,"payload":"x"\}\n',
        out,
    ), out


@pytest.mark.parametrize("opts", [[], ["-v"], ["-F", "%t|%p|%l|%q|%r|%x"], ["-F", "%j"], ["-F", "%J", "--pretty"]],
                         ids=lambda o: " ".join(o) or "payload")
def test_output_identical_on_tinsel_broker(tinsel_broker, tinsel, opts):
    compare(tinsel_broker, tinsel, opts, v5=False, retained_first=True)


def test_output_identical_v5_on_tinsel_broker(tinsel_broker, tinsel):
    compare(tinsel_broker, tinsel, ["-F", "%A|%C|%D|%F|%P|%R|%S|%t|%p"], v5=True)


def test_topic_aliases_from_the_broker_are_resolved(tinsel_broker, tinsel):
    """With a topic alias maximum in CONNECT, a broker may send the topic once and then
    only the alias; tinsel sub prints the full topic every time."""
    sub = Proc(tinsel("sub", "-p", tinsel_broker.port, "-V", "5", "-D", "connect", "topic-alias-maximum", "5",
                      "-t", "al/#", "-C", "3", "-F", "%t|%p"))
    wait_subscribed(tinsel_broker, 1)
    for i in range(3):
        run(["mosquitto_pub", "-p", tinsel_broker.port, "-t", "al/topic", "-m", f"m{i}"])
    rc, out, err = sub.wait()
    assert rc == 0, err
    assert out == b"al/topic|m0\nal/topic|m1\nal/topic|m2\n"

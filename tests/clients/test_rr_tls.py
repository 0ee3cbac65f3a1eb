"""`tinsel rr` against a responder, and TLS for pub/sub."""

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from clienttest import Proc, run, wait_subscribed


def responder(port, v5=True):
    """A paho client that answers every request on `rr/req` on its response topic (or on
    `rr/resp` in MQTT 3.1.1), echoing the correlation data."""
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
    ready = threading.Event()

    def on_connect(client, userdata, flags, rc, props=None):
        client.subscribe("rr/req", qos=1)

    def on_subscribe(*args):
        ready.set()

    def on_message(client, userdata, msg):
        props = Properties(PacketTypes.PUBLISH)
        topic = "rr/resp"
        if v5:
            topic = msg.properties.ResponseTopic
            if hasattr(msg.properties, "CorrelationData"):
                props.CorrelationData = msg.properties.CorrelationData
        client.publish(topic, b"answer to " + msg.payload, qos=1, properties=props if v5 else None)

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(5)
    return c


@pytest.mark.parametrize("v5", [True, False])
def test_rr_round_trip(mosquitto_broker, tinsel, v5):
    r = responder(mosquitto_broker.port, v5)
    try:
        version = [] if v5 else ["-V", "311"]
        rc, out, err = run(tinsel("rr", "-p", mosquitto_broker.port, "-t", "rr/req", "-e", "rr/resp",
                                  "-m", "ping", "-q", "1", "-W", "5", *version))
        assert rc == 0, err
        assert out == b"answer to ping\n"
        rc, out, err = run(tinsel("rr", "-p", mosquitto_broker.port, "-t", "rr/req", "-e", "rr/resp",
                                  "-m", "ping", "-v", *version))
        assert (rc, out) == (0, b"rr/resp answer to ping\n"), err
        ref = run(["mosquitto_rr", "-p", mosquitto_broker.port, "-t", "rr/req", "-e", "rr/resp", "-m", "ping", "-v", *version])
        assert ref[1] == out
    finally:
        r.loop_stop()
        r.disconnect()


def test_rr_timeout(mosquitto_broker, tinsel):
    rc, out, err = run(tinsel("rr", "-p", mosquitto_broker.port, "-t", "nobody", "-e", "rr/none", "-m", "x", "-W", "1"))
    assert (rc, out, err) == (27, b"", b"Timed out\n")


def start_tls(start_mosquitto, certs, free_port, require_cert=False, server="server"):
    for f in certs.iterdir():
        f.chmod(0o644)
    certs.chmod(0o755)
    extra = (
        f"user root\nlistener {free_port} 127.0.0.1\ncafile {certs / 'ca.crt'}\ncertfile {certs / (server + '.crt')}\n"
        f"keyfile {certs / (server + '.key')}\nrequire_certificate {'true' if require_cert else 'false'}\n"
    )
    return start_mosquitto(extra)


def tls_round_trip(tinsel, plain_port, tls_port, *tls_args, host="127.0.0.1"):
    sub = Proc(tinsel("sub", "-h", host, "-p", tls_port, "-t", "tls/#", "-C", "1", "-v", *tls_args))
    # The plain listener carries the publish; the TLS subscriber must see it.
    import time
    time.sleep(1.0)
    rc, _, err = run(["mosquitto_pub", "-p", plain_port, "-t", "tls/x", "-m", "secret"])
    assert rc == 0, err
    rc, out, err = sub.wait()
    assert (rc, out) == (0, b"tls/x secret\n"), err
    rc, _, err = run(tinsel("pub", "-h", host, "-p", tls_port, "-t", "tls/y", "-m", "s", *tls_args))
    assert rc == 0, err


def test_tls_cafile_and_versions(start_mosquitto, certs, free_port, tinsel):
    b = start_tls(start_mosquitto, certs, free_port)
    tls_round_trip(tinsel, b.port, free_port, "--cafile", certs / "ca.crt")
    tls_round_trip(tinsel, b.port, free_port, "--cafile", certs / "ca.crt", "--tls-version", "tlsv1.2", host="localhost")
    capath = certs / "capath"
    capath.mkdir(exist_ok=True)
    (capath / "ca.pem").write_bytes((certs / "ca.crt").read_bytes())
    tls_round_trip(tinsel, b.port, free_port, "--capath", capath)


def test_tls_url_scheme(start_mosquitto, certs, free_port, tinsel):
    b = start_tls(start_mosquitto, certs, free_port)
    rc, _, err = run(tinsel("pub", "-L", f"mqtts://127.0.0.1:{free_port}/tls/u", "-m", "x", "--cafile", certs / "ca.crt"))
    assert rc == 0, err


def test_tls_hostname_mismatch_and_insecure(start_mosquitto, certs, free_port, tinsel):
    b = start_tls(start_mosquitto, certs, free_port, server="wrong")
    rc, _, err = run(tinsel("pub", "-p", free_port, "-h", "127.0.0.1", "-t", "t", "-m", "x", "--cafile", certs / "ca.crt"))
    assert rc == 1
    assert err.decode().count("\n") == 1 and "TLS" in err.decode()
    rc, _, err = run(tinsel("pub", "-p", free_port, "-h", "127.0.0.1", "-t", "t", "-m", "x", "--cafile", certs / "ca.crt", "--insecure"))
    assert rc == 0, err


def test_tls_client_certificate(start_mosquitto, certs, free_port, tinsel):
    b = start_tls(start_mosquitto, certs, free_port, require_cert=True)
    rc, _, _ = run(tinsel("pub", "-p", free_port, "-t", "t", "-m", "x", "--cafile", certs / "ca.crt"))
    assert rc != 0
    rc, _, err = run(tinsel("pub", "-p", free_port, "-t", "t", "-m", "x", "--cafile", certs / "ca.crt",
                            "--cert", certs / "client.crt", "--key", certs / "client.key"))
    assert rc == 0, err


def test_tls_bad_cafile(start_mosquitto, certs, free_port, tinsel, tmp_path):
    """A TLS listener is there, so only the missing CA file can make this fail, and the one
    line says which file."""
    start_tls(start_mosquitto, certs, free_port)
    missing = tmp_path / "nope.crt"
    rc, _, err = run(tinsel("pub", "-p", free_port, "-t", "t", "-m", "x", "--cafile", missing))
    assert rc == 1
    text = err.decode()
    assert text.count("\n") == 1 and str(missing) in text, text


def test_tls_use_os_certs(start_mosquitto, certs, free_port, tinsel):
    """The test CA is not in the system store: the server certificate is rejected."""
    start_tls(start_mosquitto, certs, free_port)
    rc, _, err = run(tinsel("pub", "-p", free_port, "-t", "t", "-m", "x", "--tls-use-os-certs"))
    assert rc == 1
    text = err.decode()
    assert text.count("\n") == 1 and "TLS" in text and "certificate" in text.lower(), text

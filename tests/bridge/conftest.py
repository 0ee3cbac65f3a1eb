"""Fixtures for the bridge suite: brokers that can be restarted on the same port, and MQTT
clients that collect what they receive (reconnecting on their own, as a real subscriber
behind a restarting broker does).

A bridge is written once, as Mosquitto's `connection` lines; `toml_bridge` turns the same
lines into Tinsel's `[[bridges]]` table, so each test can run the one bridge from
`mosquitto.conf` (Tinsel or Mosquitto reading it) and from TOML.
"""

import shutil
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ports import free_port_number
from servers import Server

WAIT = 15.0  # the longest any single expected event may take (a reconnection included)
QUIET = 0.5  # how long we watch for copies a loop would make


def uid(prefix="t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Collector:
    """A paho-mqtt client that records every message it gets and reconnects by itself."""

    def __init__(self, port, topics=(), qos=1, client_id=None, clean=True, version=mqtt.MQTTv311):
        self.lock = threading.Lock()
        self.messages = []  # (topic, payload bytes, retain)
        self.topics = list(topics)
        self.qos = qos
        self.subscribed = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or uid("c"),
            clean_session=clean,
            protocol=version,
        )
        self.c.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if self.topics:
            assert self.subscribed.wait(WAIT), "no SUBACK"

    def _on_connect(self, c, ud, flags, rc, properties):
        if self.topics and not rc.is_failure:
            c.subscribe([(t, self.qos) for t in self.topics])

    def _on_message(self, c, ud, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def got(self, topic=None):
        with self.lock:
            return [m for m in self.messages if topic is None or m[0] == topic]

    def payloads(self, topic_prefix=""):
        with self.lock:
            return [m[1] for m in self.messages if m[0].startswith(topic_prefix)]

    def wait_for(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(list(self.messages)):
                    return
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"{what}: not seen within {timeout}s; got {self.messages[-20:]}")

    def wait_topic(self, topic, payload=None, timeout=WAIT):
        self.wait_for(
            lambda ms: any(t == topic and (payload is None or p == payload) for t, p, _ in ms),
            f"{topic} {payload!r}",
            timeout,
        )

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"PUBLISH {topic} not acknowledged"

    def close(self):
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:
            pass


def toml_bridge(lines: list[str]) -> str:
    """Mosquitto's bridge lines (`connection NAME` first) as a TOML `[[bridges]]` table."""
    out, topics = ["[[bridges]]"], []
    for line in lines:
        key, _, value = line.strip().partition(" ")
        words = value.split()
        if key == "connection":
            out.append(f'name = "{value}"')
        elif key in ("address", "addresses"):
            out.append("addresses = [" + ", ".join(f'"{w}"' for w in words) + "]")
        elif key == "topic":
            topics.append(f'"{value}"')
        elif key == "restart_timeout":
            out.append(f"restart_timeout = [{words[0]}, {words[1]}]" if len(words) == 2 else f"restart_timeout = {words[0]}")
        elif value in ("true", "false") or value.isdigit():
            out.append(f"{key} = {value}")
        else:
            out.append(f'{key} = "{value}"')
    out.append("topics = [" + ", ".join(topics) + "]")
    return "\n".join(out) + "\n"


class Brokers:
    """Starts brokers on fixed free ports of 127.0.0.1 and restarts them on the same port."""

    def __init__(self, tmp_path, tinsel_bin):
        self.tmp = tmp_path
        self.tinsel_bin = str(tinsel_bin)
        self.mosquitto_exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.servers = []
        self.clients = []
        self.n = 0

    def _start(self, args, port, kind):
        self.n += 1
        srv = Server(args, port, self.tmp / f"{kind}-{port}-{self.n}.log", kind)
        self.servers.append(srv)
        return srv

    def mosquitto(self, conf="", port=None):
        """Mosquitto with `conf` after its listener (and `allow_anonymous true`)."""
        port = port or free_port_number()
        path = self.tmp / f"mosquitto-{port}.conf"
        path.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{conf}\n")
        return self._start([self.mosquitto_exe, "-c", str(path)], port, "mosquitto")

    def tinsel_conf(self, conf="", port=None):
        """Tinsel reading a mosquitto.conf: the same text Mosquitto would read."""
        port = port or free_port_number()
        path = self.tmp / f"tinsel-{port}.conf"
        path.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{conf}\n")
        return self._start([self.tinsel_bin, "broker", "-c", str(path)], port, "tinsel")

    def tinsel_toml(self, toml="", port=None):
        port = port or free_port_number()
        path = self.tmp / f"tinsel-{port}.toml"
        path.write_text(f'[[listeners]]\naddress = "127.0.0.1"\nport = {port}\n{toml}\n')
        return self._start([self.tinsel_bin, "broker", "-c", str(path)], port, "tinsel")

    def bridging(self, kind, lines, extra=""):
        """A broker of `kind` ("tinsel-conf", "tinsel-toml", "mosquitto") with the bridge
        `lines` (and `extra` general lines, in mosquitto.conf form)."""
        if kind == "tinsel-toml":
            return self.tinsel_toml(toml_bridge(lines))
        conf = extra + "\n" + "\n".join(lines)
        return self.tinsel_conf(conf) if kind == "tinsel-conf" else self.mosquitto(conf)

    def plain(self, kind):
        """A broker of `kind` ("tinsel" or "mosquitto") with default settings."""
        return self.mosquitto() if kind == "mosquitto" else self.tinsel_conf()

    def restart(self, srv, stopped=None):
        """Stops `srv` (SIGTERM: Mosquitto saves its persistence file), runs `stopped()`
        while it is down, and starts it again on the same port with the same files."""
        srv.stop()
        if stopped is not None:
            stopped()
        return self._start(srv.args, srv.port, srv.kind)

    def collector(self, srv, *topics, **kw):
        c = Collector(srv.port, topics, **kw)
        self.clients.append(c)
        return c

    def close(self):
        for c in self.clients:
            c.close()
        for s in self.servers:
            s.stop()


@pytest.fixture
def brokers(tmp_path, tinsel_bin):
    b = Brokers(tmp_path, tinsel_bin)
    yield b
    b.close()

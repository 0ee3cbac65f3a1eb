"""Helpers for the broker interoperability suite (fixtures are in conftest.py).

`Peer` wraps a paho-mqtt 2.x client driven by our own network thread, so a test can stop it
pinging (`pause`) or cut its TCP connection without a DISCONNECT (`drop`). Every wait is bounded.
"""

import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ports import free_port_number  # noqa: F401 (re-exported for the tests)

V31, V311, V5 = mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5

WAIT = 5.0  # the longest any single expected event may take
QUIET = 0.2  # how long we watch for an unexpected extra message


def is_mosquitto(server) -> bool:
    """From the fixture that started `server` (see servers.Server.kind), not its path."""
    return server.kind == "mosquitto"


def uid(prefix="t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def topic_base() -> str:
    return f"test/{uuid.uuid4().hex[:8]}"


def props(ptype=PacketTypes.PUBLISH, **kw) -> Properties:
    p = Properties(ptype)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def prop(msg_or_props, name, default=None):
    p = msg_or_props if isinstance(msg_or_props, Properties) else getattr(msg_or_props, "properties", None)
    if p is None:
        return default
    return getattr(p, name, default)


class Peer:
    """A paho client with queues of what it received."""

    def __init__(
        self,
        port,
        client_id=None,
        protocol=V5,
        clean=True,
        keepalive=60,
        will=None,
        connect_props=None,
        manual_ack=False,
        session_expiry=None,
    ):
        self.port = port
        self.protocol = protocol
        self.client_id = uid() if client_id is None else client_id
        kwargs = {}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.clean = clean
        self.keepalive = keepalive
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
            **kwargs,
        )
        if will is not None:
            # will: (topic, payload, qos, retain[, Properties])
            self.c.will_set(will[0], will[1], will[2], will[3], properties=will[4] if len(will) > 4 else None)
        self.connect_props = connect_props
        if session_expiry is not None:
            self.connect_props = self.connect_props or props(PacketTypes.CONNECT)
            self.connect_props.SessionExpiryInterval = session_expiry
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = {}
        self.unsubacks = {}
        self.published = {}
        self._acks_lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = None
        self.connected = False

    # --- callbacks (network thread) ---
    def _on_connect(self, c, ud, flags, rc, properties):
        self.connected = rc == 0
        self.connacks.put((flags, rc, properties))

    def _on_disconnect(self, c, ud, flags, rc, properties):
        self.connected = False
        self.disconnects.put((rc, properties))

    def _on_message(self, c, ud, msg):
        self.messages.put(msg)

    def _slot(self, table, mid):
        with self._acks_lock:
            return table.setdefault(mid, queue.Queue())

    def _on_subscribe(self, c, ud, mid, rcs, properties):
        self._slot(self.subacks, mid).put(rcs)

    def _on_unsubscribe(self, c, ud, mid, rcs, properties):
        self._slot(self.unsubacks, mid).put(rcs)

    def _on_publish(self, c, ud, mid, rc, properties):
        self._slot(self.published, mid).put(rc)

    def _run(self):
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.02)
                continue
            rc = self.c.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                time.sleep(0.02)

    # --- actions (test thread) ---
    def connect(self, expect_rc=0, timeout=WAIT):
        """Connect and wait for the CONNACK; returns (flags, reason code, properties)."""
        kw = {}
        if self.protocol == V5:
            kw["clean_start"] = self.clean
            kw["properties"] = self.connect_props
        self.c.connect("127.0.0.1", self.port, keepalive=self.keepalive, **kw)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
            # Tell paho a network thread exists: publish() from the test thread then only queues
            # packets (and wakes that thread) instead of writing concurrently with it, which
            # could reorder packets on the wire.
            self.c._thread = self._thread
        try:
            flags, rc, p = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout}s") from None
        if expect_rc is not None:
            assert rc == expect_rc, f"{self.client_id}: CONNACK {rc}"
        return flags, rc, p

    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=WAIT):
        """Subscribe one filter (or a list of (filter, qos|SubscribeOptions)); returns the reason codes."""
        if isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, properties=properties)
        else:
            if options is not None:
                rc, mid = self.c.subscribe(topic, options=options, properties=properties)
            else:
                rc, mid = self.c.subscribe(topic, qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        try:
            rcs = self._slot(self.subacks, mid).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic!r} within {timeout}s") from None
        return [r.value if hasattr(r, "value") else r for r in rcs]

    def unsubscribe(self, topic, timeout=WAIT):
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        try:
            return self._slot(self.unsubacks, mid).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no UNSUBACK for {topic!r} within {timeout}s") from None

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True, timeout=WAIT):
        """Publish; for QoS>0 (and wait=True) return once the flow completed (PUBACK / PUBCOMP)."""
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if wait:
            try:
                return self._slot(self.published, info.mid).get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"publish to {topic!r} not acknowledged within {timeout}s") from None
        return info

    def expect(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def expect_n(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(0.0, left)))
            except queue.Empty:
                shown = [(m.topic, m.payload[:40]) for m in out[:10]]
                raise AssertionError(
                    f"{self.client_id}: got {len(out)} of {n} messages in {timeout}s; first: {shown}"
                ) from None
        return out

    def expect_none(self, wait=QUIET):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message {m.topic!r} {m.payload!r} qos={m.qos}")

    def expect_disconnect(self, timeout=WAIT):
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: still connected after {timeout}s") from None

    def pause(self):
        """Stop servicing the network: no more PINGREQ, no reads."""
        self._paused.set()

    def resume(self):
        """Service the network again after `pause` (what was queued meanwhile is written at once)."""
        self._paused.clear()

    def disconnect(self, reasoncode=None, properties=None):
        """A normal DISCONNECT (MQTT 5: with an optional reason code and properties)."""
        if self.protocol == V5 and reasoncode is not None:
            from paho.mqtt.reasoncodes import ReasonCode

            rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reasoncode)
            self.c.disconnect(reasoncode=rc, properties=properties)
        else:
            self.c.disconnect(properties=properties)
        self.expect_disconnect()
        self.close()

    def drop(self):
        """Cut the TCP connection without DISCONNECT: an abnormal disconnect for the broker."""
        self._paused.set()
        time.sleep(0.06)  # let a loop() in progress finish
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.close()

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            sock = self.c.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass


def tinsel_config(port, body="") -> str:
    """A tinsel TOML config: `body` (top-level keys, then tables) and one listener on `port`."""
    return f'{body}\n[[listeners]]\naddress = "127.0.0.1"\nport = {port}\n'


def run_cli(args, timeout=WAIT, input=None):
    return subprocess.run(args, capture_output=True, timeout=timeout, input=input)


class SubProc:
    """A background `mosquitto_sub` whose output lines are read with a bounded wait."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip(b"\n"))
        self.lines.put(None)

    def line(self, timeout=WAIT):
        try:
            ln = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.proc.args} within {timeout}s") from None
        assert ln is not None, f"{self.proc.args} exited: {self.proc.stderr.read()!r}"
        return ln

    def no_more(self, wait=QUIET):
        try:
            ln = self.lines.get(timeout=wait)
        except queue.Empty:
            return
        assert ln is None, f"unexpected output {ln!r}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def xfail_on_mosquitto(request, server, reason, strict=True):
    """Mark this run xfail when the broker is Mosquitto, which deviates from the spec here."""
    if is_mosquitto(server):
        request.applymarker(pytest.mark.xfail(strict=strict, reason=f"Mosquitto 2.0.11: {reason}"))


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return SubscribeOptions(
        qos=qos,
        noLocal=no_local,
        retainAsPublished=retain_as_published,
        retainHandling=retain_handling,
    )


MOSQUITTO_EXE = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """A broker process listening on every port of `ports`, its output kept in a log file."""

    def __init__(self, args, ports, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                assert self.proc.poll() is None, f"{args} exited: {self.log()}"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nothing on port {port}: {self.log()}"
                    time.sleep(0.05)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class ConfBroker(Broker):
    """Mosquitto or `tinsel broker` run on one Mosquitto configuration file, listening on every
    port of `ports` (127.0.0.1); its output kept in a log file. `extra` goes to tinsel only."""

    def __init__(self, kind, tinsel_bin, conf_text, ports, tmp_path, extra=()):
        self.kind = kind
        conf = tmp_path / f"{kind}-{ports[0]}.conf"
        conf.write_text(conf_text)
        if kind == "mosquitto":
            args = [MOSQUITTO_EXE, "-c", str(conf)]
        else:
            args = [str(tinsel_bin), "broker", "-c", str(conf), *extra]
        super().__init__(args, ports, tmp_path / f"{kind}-{ports[0]}.log")

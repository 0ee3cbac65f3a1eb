"""Persistence (tinsel only): `tinsel broker --data DIR` killed with SIGKILL under load.

A publisher sends QoS 1 (or QoS 2) messages as fast as the broker acknowledges them while a
persistent subscriber is offline and another is online; the broker is killed with SIGKILL
mid-stream and started again on the same directory. Every message the publisher had an
acknowledgement for must reach both subscribers; at QoS 2 none may reach one twice. Sessions,
subscriptions and retained messages come back.
"""

import queue
import threading
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from brokertest import V5, Peer, props, run_cli, tinsel_config, uid

MAX_MESSAGES = 4000  # the publisher never sends more
KILL_AFTER_ACKED = 600  # ... and the broker is killed once this many are acknowledged
LOAD_SECONDS = 20.0  # or after this long, whichever comes first
NEVER = 0xFFFFFFFF


def persistent(port, client_id):
    return Peer(port, client_id=client_id, protocol=V5, clean=False, session_expiry=NEVER)


class Publisher:
    """Publishes until stopped; remembers which payloads were acknowledged (PUBACK, or the
    end of the QoS 2 flow, which comes after PUBREC)."""

    def __init__(self, port, topic, qos):
        self.peer = Peer(port, client_id=uid("pub"), protocol=V5)
        self.peer.c.max_inflight_messages_set(50)
        self.topic, self.qos = topic, qos
        self.by_mid = {}
        self.acked_mids = set()
        self.lock = threading.Lock()
        self.peer.c.on_publish = self._on_publish
        self.stop = threading.Event()

    def _on_publish(self, c, ud, mid, rc, properties):
        # Never held while calling paho (which holds its own lock around this callback).
        with self.lock:
            self.acked_mids.add(mid)

    def run(self):
        self.peer.connect()
        for i in range(MAX_MESSAGES):
            if self.stop.is_set():
                break
            payload = f"m{i}".encode()
            info = self.peer.c.publish(self.topic, payload, self.qos)
            with self.lock:
                self.by_mid[info.mid] = payload
            # Bounded backlog in paho: wait while much is unacknowledged.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not self.stop.is_set():
                with self.lock:
                    if i - len(self.acked_mids) < 200:
                        break
                time.sleep(0.001)

    def acked_count(self):
        with self.lock:
            return len(self.acked_mids)

    def acked(self):
        with self.lock:
            return {self.by_mid[m] for m in self.acked_mids if m in self.by_mid}


def received(peer):
    out = []
    while not peer.messages.empty():
        out.append(peer.messages.get())
    return out


def start_on(start_tinsel, data, mode):
    if mode == "sync":
        return start_tinsel("--data", str(data))
    # Periodic: acknowledgements leave as soon as the store's thread has the records; it
    # writes them at once and syncs every 200 ms.
    body = f'[persistence]\nenabled = true\nlocation = "{data}"\nmode = "{mode}"\nsync_interval_ms = 200\n'
    return start_tinsel(config=tinsel_config("{port}", body))


@pytest.mark.parametrize("mode,qos", [("sync", 1), ("sync", 2)])
def test_kill_9_under_load_loses_nothing_acknowledged(start_tinsel, tmp_path, mode, qos):
    data = tmp_path / "data"
    broker = start_on(start_tinsel, data, mode)
    topic = f"load/{uid()}"

    offline = persistent(broker.port, uid("off"))
    offline.connect()
    assert offline.subscribe(f"{topic}/#", qos) == [qos]
    offline.disconnect()
    online = persistent(broker.port, uid("on"))
    online.connect()
    assert online.subscribe(f"{topic}/#", qos) == [qos]
    retained = Peer(broker.port, protocol=V5)
    retained.connect()
    retained.publish(f"{topic}/retained", b"kept", qos=qos, retain=True)
    retained.close()

    pub = Publisher(broker.port, f"{topic}/x", qos)
    t = threading.Thread(target=pub.run, daemon=True)
    t.start()
    deadline = time.monotonic() + LOAD_SECONDS
    while pub.acked_count() < KILL_AFTER_ACKED and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.01)
    broker.proc.kill()  # SIGKILL
    broker.proc.wait()
    pub.stop.set()
    t.join(timeout=10)
    pub.peer.close()
    acked = pub.acked()
    sent = len(pub.by_mid)
    assert len(acked) >= 100, f"only {len(acked)} acknowledged before the kill"

    # The same directory, a new process.
    again = start_on(start_tinsel, data, mode)
    before = received(online)
    # The online subscriber's client reconnects with the state it kept (paho keeps the QoS 2
    # messages it has PUBRECed until their PUBREL comes, and hands them over then).
    online.port = again.port
    online2 = online
    flags, rc, _ = online2.connect()
    assert flags.session_present, "the online subscriber's session is gone"
    offline2 = persistent(again.port, offline.client_id)
    flags, rc, _ = offline2.connect()
    assert flags.session_present, "the offline subscriber's session is gone"

    for name, peer, earlier in [("offline", offline2, []), ("online", online2, before)]:
        got = [m.payload for m in earlier if m.topic.endswith("/x")]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got += [m.payload for m in received(peer) if m.topic.endswith("/x")]
            if acked <= set(got):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        got += [m.payload for m in received(peer) if m.topic.endswith("/x")]
        missing = acked - set(got)
        assert not missing, f"{name}: {len(missing)} of {len(acked)} acknowledged messages lost"
        if qos == 2:
            twice = {p for p in got if got.count(p) > 1}
            assert not twice, f"{name}: QoS 2 messages delivered twice: {sorted(twice)[:10]}"
        print(
            f"{mode} qos {qos} {name}: sent {sent}, acknowledged {len(acked)} before SIGKILL, "
            f"received {len(set(got))} distinct ({len(got)} in all)"
        )

    # The subscription survived: a new message reaches the offline subscriber's session.
    late = Peer(again.port, protocol=V5)
    late.connect()
    late.publish(f"{topic}/x", b"after", qos=qos)
    late.close()
    assert any(m.payload == b"after" for m in offline2.expect_n(1, timeout=10) + received(offline2))

    # The retained message survived.
    fresh = Peer(again.port, protocol=V5)
    fresh.connect()
    fresh.subscribe(f"{topic}/retained", qos)
    m = fresh.expect()
    assert m.payload == b"kept" and m.retain
    fresh.close()
    offline2.close()
    online2.close()


def test_periodic_mode_keeps_everything_across_a_clean_restart(start_tinsel, tmp_path):
    # Periodic mode does not hold acknowledgements: a SIGKILL can lose the records the
    # store's thread had not written yet (see docs/persistence.md). A clean stop loses none.
    data = tmp_path / "data"
    broker = start_on(start_tinsel, data, "periodic")
    topic = f"periodic/{uid()}"
    sub = persistent(broker.port, uid("s"))
    sub.connect()
    sub.subscribe(f"{topic}/#", 1)
    sub.disconnect()
    pub = Peer(broker.port, protocol=V5)
    pub.connect()
    for i in range(200):
        pub.publish(f"{topic}/x", f"m{i}".encode(), qos=1)
    pub.close()
    broker.stop()  # SIGTERM: the store writes and syncs what it has
    again = start_on(start_tinsel, data, "periodic")
    sub2 = persistent(again.port, sub.client_id)
    flags, _, _ = sub2.connect()
    assert flags.session_present
    got = {m.payload for m in sub2.expect_n(200, timeout=20)}
    assert got == {f"m{i}".encode() for i in range(200)}
    sub2.close()


def test_a_corrupt_log_is_a_clear_error_naming_the_file_and_offset(start_tinsel, tinsel_bin, tmp_path):
    import subprocess

    data = tmp_path / "data"
    broker = start_tinsel("--data", str(data))
    p = persistent(broker.port, uid("s"))
    p.connect()
    p.subscribe("a/#", 1)
    p.subscribe("b/#", 1)
    p.subscribe("c/#", 1)
    p.close()
    broker.stop()
    log = data / "tinsel.log"
    raw = bytearray(log.read_bytes())
    assert len(raw) > 40
    raw[12] ^= 0xFF  # inside the first frame, with more frames after it
    log.write_bytes(bytes(raw))
    out = subprocess.run(
        [str(tinsel_bin), "broker", "-p", "0", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode != 0
    assert str(log) in out.stderr and "offset 0" in out.stderr, out.stderr


def _reason(rc):
    return getattr(rc, "value", rc)


def test_a_full_disk_refuses_qos1_with_0x97_and_the_broker_recovers_by_itself(start_tinsel, tmp_path):
    import os
    import queue
    import subprocess

    data = tmp_path / "small"
    data.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)], capture_output=True
    ).returncode != 0:
        pytest.skip("needs root and tmpfs mounts to make a small disk")
    try:
        broker = start_tinsel("--data", str(data))
        topic = f"full/{uid()}"
        sub = persistent(broker.port, uid("s"))
        sub.connect()
        sub.subscribe(f"{topic}/#", 1)
        sub.disconnect()

        pub = Peer(broker.port, protocol=V5)
        pub.connect()
        payload = b"x" * 8000
        acked, held = [], []
        for i in range(100):  # 800 kB: more than the disk holds
            info = pub.c.publish(f"{topic}/x", payload + str(i).encode(), 1)
            try:
                rc = _reason(pub._slot(pub.published, info.mid).get(timeout=2))
            except queue.Empty:
                # Accepted as the disk filled: its PUBACK waits for space (and the PUBACKs
                # of this publisher's later messages wait behind it, in order).
                held.append((i, info.mid))
                break
            assert rc in (0, 0x10), rc
            acked.append(i)
        assert held, f"the disk never filled: {len(acked)} acknowledged"
        # Meanwhile a publisher with nothing waiting is refused at once.
        other = Peer(broker.port, protocol=V5)
        other.connect()
        assert _reason(other.publish(f"{topic}/x", b"refused", qos=1)) == 0x97
        other.close()
        assert "cannot write" in broker.log()

        # Space returns: the held acknowledgements leave, new messages are accepted again.
        subprocess.run(["mount", "-o", "remount,size=8m", str(data)], check=True)
        for i, mid in held:
            assert _reason(pub._slot(pub.published, mid).get(timeout=10)) in (0, 0x10)
            acked.append(i)
        deadline = time.monotonic() + 10
        while True:
            info = pub.c.publish(f"{topic}/x", b"after", 1)
            rc = _reason(pub._slot(pub.published, info.mid).get(timeout=5))
            if rc in (0, 0x10):
                break
            assert time.monotonic() < deadline, "the broker did not recover"
            time.sleep(0.2)
        pub.close()

        # Nothing acknowledged was lost, through a SIGKILL too.
        broker.proc.kill()
        broker.proc.wait()
        again = start_tinsel("--data", str(data))
        sub2 = persistent(again.port, sub.client_id)
        sub2.connect()
        got = {m.payload for m in sub2.expect_n(len(acked) + 1, timeout=20)}
        for i in acked:
            assert payload + str(i).encode() in got, f"message {i} lost"
        assert b"after" in got
        sub2.close()
        again.stop()
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


@pytest.mark.parametrize("stop", ["kill", "term"])
def test_a_will_waiting_for_its_delay_survives_a_restart(start_tinsel, tmp_path, stop):
    """A will waiting for its delay is on disk: after a SIGKILL it goes out after its delay,
    counted from the restart, unless its client is back in time. A SIGTERM publishes every
    will at once (as Mosquitto does), into the persistent session that waits for it, and no
    will comes back after the restart to go out a second time."""
    data = tmp_path / "data"
    broker = start_on(start_tinsel, data, "sync")
    topic = f"wills/{uid()}"
    watcher = persistent(broker.port, uid("w"))
    watcher.connect()
    assert watcher.subscribe(f"{topic}/#", 1) == [1]

    def will_peer(name):
        delay = props(PacketTypes.WILLMESSAGE, WillDelayInterval=3)
        return Peer(
            broker.port,
            client_id=uid(name),
            session_expiry=NEVER,
            will=(f"{topic}/{name}", f"{name} is gone".encode(), 1, False, delay),
        )

    gone, back = will_peer("gone"), will_peer("back")
    gone.connect()
    back.connect()
    if stop == "kill":
        gone.drop()
        back.drop()
        # Both wills now wait. A message into a persistent session is acknowledged only
        # when every record made before it is synced, the wills' among them.
        time.sleep(1.0)
        marker = Peer(broker.port, protocol=V5)
        marker.connect()
        marker.publish(f"{topic}/marker", b"m", qos=1)
        marker.close()
        broker.proc.kill()
        broker.proc.wait()
    else:
        broker.stop()
        gone.drop()
        back.drop()
    watcher.drop()

    again = start_on(start_tinsel, data, "sync")
    returning = persistent(again.port, back.client_id)
    flags, _, _ = returning.connect()
    assert flags.session_present, broker.log() + "\n---\n" + again.log()
    watcher2 = persistent(again.port, watcher.client_id)
    flags, _, _ = watcher2.connect()
    assert flags.session_present
    def wills(messages):
        return [(m.topic, m.payload) for m in messages if "/marker" not in m.topic]

    if stop == "term":
        # Both went out at the stop, into the watcher's session; nothing follows.
        got = wills(watcher2.expect_n(2, timeout=10))
        time.sleep(4)
        got += wills(received(watcher2))
        assert sorted(got) == [(f"{topic}/back", b"back is gone"), (f"{topic}/gone", b"gone is gone")]
        returning.close()
        watcher2.close()
        return
    # The delay starts anew at the restart: nothing goes out at once.
    time.sleep(1.0)
    assert wills(received(watcher2)) == []
    got = []
    deadline = time.monotonic() + 15
    while not got and time.monotonic() < deadline:
        got += wills(received(watcher2))
        time.sleep(0.05)
    # The returning client's will stays dropped past its delay.
    time.sleep(3.5)
    got += wills(received(watcher2))
    assert got == [(f"{topic}/gone", b"gone is gone")]
    returning.close()
    watcher2.close()


def test_the_will_of_a_client_connected_at_a_kill_9_goes_out_after_the_restart(
    start_tinsel, sub_proc, tmp_path
):
    """A client with a will was connected when the broker was killed: its connection ended
    without DISCONNECT, so the restarted broker publishes its will, once. A client that
    disconnected normally before the kill has no will published."""
    data = tmp_path / "data"
    broker = start_on(start_tinsel, data, "sync")
    topic = f"wills/{uid()}"
    watcher = persistent(broker.port, uid("w"))
    watcher.connect()
    assert watcher.subscribe(f"{topic}/#", 1) == [1]

    def will_sub(name, *extra):
        return [
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", uid(name),
            "--will-topic", f"{topic}/{name}", "--will-payload", f"{name} is gone",
            "--will-qos", "1", *extra,
        ]

    # Connected at the kill: proven by a message it receives (its CONNACK waited for the
    # will to be on disk).
    token = uid("sync")
    crashed = sub_proc(will_sub("crashed", "-t", f"sync/{token}"))
    helper = Peer(broker.port, protocol=V5)
    helper.connect()
    for _ in range(50):
        helper.publish(f"sync/{token}", token.encode(), qos=0)
        try:
            if token.encode() in crashed.lines.get(timeout=0.1):
                break
        except queue.Empty:
            continue
    else:
        raise AssertionError("mosquitto_sub never received its sync message")
    # Gone before the kill with DISCONNECT (-E: exits once subscribed): no will.
    polite = run_cli(will_sub("polite", "-t", "x", "-E"))
    assert polite.returncode == 0, polite.stderr
    # Acknowledged once every record made before it is synced, the DISCONNECT's among them.
    helper.publish(f"{topic}/marker", b"m", qos=1)
    helper.close()
    broker.proc.kill()
    broker.proc.wait()
    crashed.stop()
    watcher.drop()

    again = start_on(start_tinsel, data, "sync")
    watcher2 = persistent(again.port, watcher.client_id)
    flags, _, _ = watcher2.connect()
    assert flags.session_present
    got = []
    deadline = time.monotonic() + 15
    while not any(t.endswith("/crashed") for t, _ in got) and time.monotonic() < deadline:
        try:
            m = watcher2.messages.get(timeout=0.2)
        except queue.Empty:
            continue
        got.append((m.topic, m.payload))
    watcher2.expect_none()
    got += [(m.topic, m.payload) for m in received(watcher2)]
    wills = [(t, p) for t, p in got if not t.endswith("/marker")]
    assert wills == [(f"{topic}/crashed", b"crashed is gone")], again.log()
    watcher2.close()

"""Tinsel as a service: stopping on SIGTERM (MQTT 5 clients told 0x8B, wills published into
persistent sessions that survive the restart, as Mosquitto does), a SIGTERM during the
start, readiness and stopping reported to systemd through $NOTIFY_SOCKET, the unit file
checked by systemd-analyze, and the man pages."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest
from brokertest import V5, Peer, free_port_number, props, uid
from paho.mqtt.packettypes import PacketTypes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEVER = 0xFFFFFFFF


def start_persistent(kind, start_tinsel, start_mosquitto, data):
    if kind == "tinsel":
        return start_tinsel("--data", str(data))
    user = "user root\n" if os.geteuid() == 0 else ""
    return start_mosquitto(f"{user}persistence true\npersistence_location {data}/\n")


@pytest.mark.parametrize("kind", ["tinsel", "mosquitto"])
def test_sigterm_publishes_wills_into_persistent_sessions_that_survive(
    kind, start_tinsel, start_mosquitto, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    broker = start_persistent(kind, start_tinsel, start_mosquitto, data)
    base = f"wills/{uid()}"
    watcher = Peer(broker.port, uid("watch"), V5, clean=False, session_expiry=NEVER)
    watcher.connect()
    watcher.subscribe(f"{base}/#", 1)
    # A will sent as the connection closes, and one that would wait 60 s.
    now = Peer(broker.port, uid("now"), V5, will=(f"{base}/now", b"gone", 1, False))
    now.connect()
    delay = props(PacketTypes.WILLMESSAGE, WillDelayInterval=60)
    later = Peer(broker.port, uid("later"), V5, session_expiry=120,
                 will=(f"{base}/later", b"gone later", 1, False, delay))
    later.connect()

    broker.proc.send_signal(signal.SIGTERM)
    assert broker.proc.wait(timeout=10) == 0
    if kind == "tinsel":
        # Mosquitto closes the sockets without a DISCONNECT.
        for peer in (watcher, now, later):
            rc, _ = peer.expect_disconnect()
            assert rc.value == 0x8B, f"{peer.client_id}: {rc}"
    for peer in (watcher, now, later):
        peer.close()
    assert "panic" not in broker.log().lower()

    again = start_persistent(kind, start_tinsel, start_mosquitto, data)
    back = Peer(again.port, watcher.client_id, V5, clean=False, session_expiry=NEVER)
    flags, _, _ = back.connect()
    assert flags.session_present
    got = sorted((m.topic, m.payload) for m in back.expect_n(2))
    assert got == [(f"{base}/later", b"gone later"), (f"{base}/now", b"gone")]
    back.expect_none()
    back.close()


def sigterm_caught(pid):
    """Whether the process catches SIGTERM (its handler is installed)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_sigterm_during_the_start_exits_0(tinsel_bin, tmp_path):
    # The broker opens its log file before it binds: a FIFO nobody reads holds it there,
    # caught in the middle of its start, for as long as the test wants.
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    port = free_port_number()
    err = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([str(tinsel_bin), "broker", "-p", str(port), "--log-file", str(fifo)],
                            stdout=err, stderr=subprocess.STDOUT)
    reader = None
    try:
        deadline = time.monotonic() + 10
        while not sigterm_caught(proc.pid):
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, "SIGTERM never caught"
            time.sleep(0.02)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        proc.send_signal(signal.SIGTERM)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the start go on
        assert proc.wait(timeout=10) == 0
        log = os.read(reader, 1 << 16).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader is not None:
            os.close(reader)
        err.close()
    assert "stopped before the listeners were bound" in log, log
    assert "listening on" not in log
    assert (tmp_path / "stderr").read_text() == ""


def test_readiness_and_stopping_go_to_notify_socket(tinsel_bin, tmp_path):
    path = str(tmp_path / "notify.sock")
    port = free_port_number()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=path)
        err = open(tmp_path / "stderr", "wb")
        proc = subprocess.Popen([str(tinsel_bin), "broker", "-p", str(port)], env=env,
                                stdout=err, stderr=subprocess.STDOUT)
        try:
            ready = notify.recv(4096).decode().splitlines()
            assert ready[0] == "READY=1", ready
            assert ready[1] == f"STATUS=accepting MQTT connections on 127.0.0.1:{port}", ready
            # Ready means accepting: a client connects at once.
            c = Peer(port, uid("ready"), V5)
            c.connect()
            c.close()
            proc.send_signal(signal.SIGTERM)
            assert notify.recv(4096).decode().splitlines() == ["STOPPING=1"]
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()


def test_the_systemd_unit_passes_systemd_analyze(tinsel_bin, tmp_path):
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is not installed: run scripts/install-test-peers"
    unit = open(os.path.join(ROOT, "packaging", "tinsel.service")).read()
    assert "Type=notify" in unit
    # The unit names /usr/local/bin/tinsel; verify it against the binary under test.
    (tmp_path / "tinsel.service").write_text(unit.replace("/usr/local/bin/tinsel", str(tinsel_bin)))
    r = subprocess.run([exe, "verify", "--man=no", str(tmp_path / "tinsel.service")],
                       capture_output=True, text=True, timeout=30)
    # Without systemd as PID 1 it cannot resolve the system's units; only lines about ours count.
    ours = [line for line in r.stderr.splitlines() if "tinsel.service" in line]
    assert ours == [], r.stderr


# ---------------------------------------------------------------- man pages

def broker_long_options(tinsel_bin):
    help_text = subprocess.run([str(tinsel_bin), "broker", "--help"], capture_output=True,
                               text=True, check=True, timeout=10).stdout
    import re
    return sorted(set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)))


def test_man_pages_cover_every_subcommand_and_option(tinsel_bin, tmp_path):
    out = tmp_path / "man"
    r = subprocess.run([str(tinsel_bin), "man", str(out)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    expected = {"tinsel.1"} | {f"tinsel-{c}.1" for c in
                               ("bench", "broker", "lab", "lights", "man", "passwd", "pub", "rr", "sub")}
    assert expected <= names, names
    assert all(n.startswith("tinsel") and n.endswith(".1") for n in names), names
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o444 == 0o444
    page = (out / "tinsel-broker.1").read_text()
    # roff escapes each '-' of an option as '\-'.
    for opt in broker_long_options(tinsel_bin):
        assert opt.replace("-", "\\-") in page, opt
    groff = shutil.which("groff")
    assert groff, "groff is not installed: run scripts/install-test-peers"
    text = subprocess.run([groff, "-man", "-Tutf8", "-P-cbou", str(out / "tinsel-broker.1")],
                          capture_output=True, timeout=10)
    assert text.returncode == 0, text.stderr
    rendered = text.stdout.decode()
    # groff may hyphenate or use Unicode hyphens: compare on ASCII hyphens.
    rendered = rendered.replace("\u2010", "-").replace("\u2212", "-")
    for opt in broker_long_options(tinsel_bin):
        assert opt in rendered, opt


def test_man_without_a_directory_is_a_one_line_error(tinsel_bin, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run([str(tinsel_bin), "man", str(blocker / "sub")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "tinsel man:" in r.stderr


# ---------------------------------------------------------------- container image

def test_container_healthcheck_and_config_work_here(tinsel_bin, tmp_path):
    """No container runtime runs here: the image's own configuration and HEALTHCHECK
    command are run against the binary under test instead."""
    import json
    import re

    text = open(os.path.join(ROOT, "packaging", "Containerfile")).read()
    health = json.loads(re.search(r"CMD (\[[^\]]*\])", text.split("HEALTHCHECK", 1)[1]).group(1))
    assert health[0] == "tinsel"
    config = open(os.path.join(ROOT, "packaging", "container.toml")).read()
    port, hport = free_port_number(), free_port_number()
    config = (config.replace('"0.0.0.0"', '"127.0.0.1"').replace("port = 1883", f"port = {port}")
              .replace("0.0.0.0:9090", f"127.0.0.1:{hport}")
              .replace("/var/lib/tinsel", str(tmp_path / "data")))
    (tmp_path / "tinsel.toml").write_text(config)
    health = [str(tinsel_bin)] + [str(port) if a == "1883" else a for a in health[1:]]
    # The service's example configuration is valid too.
    for cfg in (tmp_path / "tinsel.toml", os.path.join(ROOT, "packaging", "tinsel.toml")):
        r = subprocess.run([str(tinsel_bin), "broker", "--check", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    assert subprocess.run(health, capture_output=True, timeout=15).returncode != 0, "no broker yet"
    from servers import Server
    srv = Server([str(tinsel_bin), "broker", "-c", str(tmp_path / "tinsel.toml")], port,
                 tmp_path / "broker.log", "tinsel")
    try:
        r = subprocess.run(health, capture_output=True, text=True, timeout=15)
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith(" seconds\n"), r.stdout
    finally:
        srv.stop()


# ---------------------------------------------------------------- package metadata

def test_every_package_says_what_it_is_and_its_licenses_are_in_the_tree():
    import json
    r = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline",
                        "--manifest-path", os.path.join(ROOT, "Cargo.toml")],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and shutil.which("cargo") is None:
        pytest.skip("cargo is not on PATH")
    assert r.returncode == 0, r.stderr
    packages = json.loads(r.stdout)["packages"]
    assert len(packages) >= 9
    for p in packages:
        for key in ("description", "license", "repository", "readme"):
            assert p.get(key), f"{p['name']}: no {key}"
        assert 1 <= len(p["keywords"]) <= 5 and p["categories"], p["name"]
        assert os.path.exists(p["readme"] if os.path.isabs(p["readme"])
                              else os.path.join(os.path.dirname(p["manifest_path"]), p["readme"]))
        for name in p["license"].replace("(", " ").replace(")", " ").split():
            if name in ("OR", "AND", "WITH"):
                continue
            short = {"Apache-2.0": "APACHE"}.get(name, name)
            assert os.path.exists(os.path.join(ROOT, f"LICENSE-{short}")), name

"""End to end: `tinsel lab` as a learner meets it, in real headless Chromium, with the real
mosquitto_pub and tshark.

Screenshots of both states go to $TINSEL_LAB_SCREENSHOTS when set (the docs' images are
made this way: TINSEL_LAB_SCREENSHOTS=docs/lab), else to the test's temporary directory.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lab_support import CONTROL_TOPIC, DEFAULT_FLAG, STATUS_TOPIC, free_port_number, wait_for_port
from lab_cdp import Page, dump_dom

ROOT = Path(__file__).resolve().parent.parent.parent

# No module-wide skip: the README's test command (scripts/test) installs chromium, tshark and
# Mosquitto's clients, and a test that needs a missing one fails saying which, while the
# tests that need none of them still run.


def tshark(capture: Path, port: int, *args: str) -> str:
    assert shutil.which("tshark"), "tshark is not installed: run scripts/install-test-peers"
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-d", f"tcp.port=={port},mqtt", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def mqtt_rows(capture: Path, port: int) -> list[dict]:
    """One dict per MQTT frame: message types, client ids, topics, payloads (hex)."""
    out = tshark(
        capture,
        port,
        "-Y",
        "mqtt",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-e",
        "mqtt.msgtype",
        "-e",
        "mqtt.clientid",
        "-e",
        "mqtt.topic",
        "-e",
        "mqtt.msg",
        "-e",
        "mqtt.username",
    )
    rows = []
    for line in out.splitlines():
        f = (line.split("\t") + [""] * 5)[:5]
        rows.append(
            {
                "types": f[0].split("|"),
                "clients": f[1].split("|"),
                "topics": f[2].split("|"),
                # tshark writes <MISSING> for an empty payload.
                "payloads": [
                    b"" if p == "<MISSING>" else bytes.fromhex(p.replace(":", ""))
                    for p in f[3].split("|")
                    if p
                ],
                "users": f[4].split("|"),
            }
        )
    return rows


def published(rows, topic):
    """Payloads published to `topic`, in capture order (both directions)."""
    out = []
    for r in rows:
        pubs = [t for t in r["topics"] if t]
        for t, p in zip(pubs, r["payloads"]):
            if t == topic:
                out.append(p)
    return out


def wait_log(proc, needle: str, count: int = 1, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.log().count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged {count} times:\n{proc.log()}")


def screenshot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TINSEL_LAB_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_the_learner_switches_the_lights_on(start_lab, tmp_path):
    lab = start_lab()
    lab.expect_line("the saboteur has struck")
    shots = screenshot_dir(tmp_path)
    # The lab's own output does not give the answer away.
    time.sleep(0.3)
    told = "".join(lab.stdout) + lab.log()
    assert CONTROL_TOPIC not in told, told
    assert "mosquitto_pub -h localhost" in told

    page = Page(lab.url)
    try:
        page.wait_for(
            "document.body.dataset.lights === 'off' && document.body.dataset.broker === 'connected'"
        )
        # The page loaded nothing from anywhere else (the lab runs offline).
        resources = page.eval("performance.getEntriesByType('resource').map(e => e.name)")
        assert all(r.startswith(lab.url) for r in resources), resources
        # A marker that a reload would erase.
        page.eval("window.__sameDocument = 'yes'")
        html = page.html()
        assert DEFAULT_FLAG not in html and "THM{" not in html
        assert page.eval("document.getElementById('flag-card').hidden") is True
        assert page.eval("document.getElementById('flag').textContent") == ""
        assert page.eval("document.querySelectorAll('.bulb').length") == 28
        assert "Lights off" in page.eval("document.getElementById('lights-pill').textContent")
        assert "connected" in page.eval("document.getElementById('broker-pill').textContent")
        time.sleep(0.8)
        page.screenshot(shots / "lights-off.png")

        # The scenario's exact command.
        lab.pub("on")
        page.wait_for("document.body.dataset.lights === 'on'")
        assert page.eval("window.__sameDocument") == "yes", "the page was reloaded"
        page.wait_for("document.getElementById('flag').textContent.length > 0")
        assert page.eval("document.getElementById('flag').textContent") == DEFAULT_FLAG
        assert page.eval("document.getElementById('flag-card').hidden") is False
        assert page.eval("getComputedStyle(document.getElementById('flag-card')).display") != "none"
        assert "Lights on" in page.eval("document.getElementById('lights-pill').textContent")
        time.sleep(1.5)  # let the lights fade in before the picture
        page.screenshot(shots / "lights-on.png")

        # Words that are not exactly `off` leave them on.
        others = ["OFF", "Off", "off ", " off", "lights off", "0", ""]
        for word in others:
            lab.pub(word)
        wait_log(lab, "lights: ignored", count=len(others))
        assert page.eval("document.body.dataset.lights") == "on"
        assert page.eval("document.getElementById('flag').textContent") == DEFAULT_FLAG

        # `off` turns them off, and the flag leaves the page.
        lab.pub("off")
        page.wait_for("document.body.dataset.lights === 'off'")
        assert page.eval("window.__sameDocument") == "yes"
        assert DEFAULT_FLAG not in page.html()
        assert page.eval("document.getElementById('flag-card').hidden") is True

        # Words that are not exactly `on` leave them off.
        more = ["ON", "On", "on ", "\non", "onn", "yes"]
        for word in more:
            lab.pub(word)
        wait_log(lab, "lights: ignored", count=len(others) + len(more))
        assert page.eval("document.body.dataset.lights") == "off"
        assert DEFAULT_FLAG not in page.html()

        # ... and the right word still works.
        lab.pub("on")
        page.wait_for("document.body.dataset.lights === 'on'")
        assert page.eval("document.getElementById('flag').textContent") == DEFAULT_FLAG
    finally:
        page.close()

    assert lab.stop() == 0, lab.log()

    # The capture: tshark decodes it as MQTT and finds the control topic, who connected,
    # the saboteur's `off` and the learner's `on`; the flag is nowhere in it.
    rows = mqtt_rows(lab.capture, lab.mqtt_port)
    types = [t for r in rows for t in r["types"]]
    assert "1" in types and "8" in types and "3" in types  # CONNECT, SUBSCRIBE, PUBLISH
    clients = {c for r in rows for c in r["clients"] if c}
    assert {"wareville-lights", "mayor-malware"} <= clients
    assert any(CONTROL_TOPIC in r["topics"] and "8" in r["types"] for r in rows), rows
    control = published(rows, CONTROL_TOPIC)
    assert control[0] == b"off", control  # the saboteur came first
    assert b"on" in control and b"ON" in control
    assert published(rows, STATUS_TOPIC)[-1] == b"offline"
    raw = lab.capture.read_bytes()
    assert DEFAULT_FLAG.encode() not in raw and b"THM{" not in raw
    verbose = tshark(lab.capture, lab.mqtt_port, "-Y", "mqtt", "-V", "-x")
    assert CONTROL_TOPIC in verbose
    assert DEFAULT_FLAG not in verbose


def test_the_flag_is_nowhere_while_the_lights_are_off(start_lab):
    flag = "FLAG{e2e_custom_secret_7f3a}"
    lab = start_lab("--flag", flag)
    lab.expect_line("the saboteur has struck")

    # The page's source, after its scripts ran, in a real browser.
    dom = dump_dom(lab.url)
    assert "Wareville" in dom
    assert flag not in dom and "FLAG{" not in dom
    # Every endpoint, and some that do not exist.
    for path in ["/", "/state", "/flag", "/api/flag", "/page.html", "/static/app.js", "/events?x=1"]:
        if path.startswith("/events"):
            continue
        status, body = lab.get(path)
        assert flag not in body, path
    status, body = lab.get("/state")
    assert status == 200 and '"lights":"off"' in body
    # The live stream's first event.
    with socket.create_connection(("127.0.0.1", lab.http_port), timeout=10) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"event: state" not in seen or b"\n\n" not in seen.split(b"event: state", 1)[1]:
            assert time.monotonic() < deadline, seen
            seen += s.recv(4096)
        assert flag.encode() not in seen and b'"lights":"off"' in seen

    # Once on, the flag given with --flag is what the page shows (also on a fresh load).
    lab.pub("on")
    deadline = time.monotonic() + 10
    while '"lights":"on"' not in lab.get("/state")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert flag in lab.get("/state")[1]
    assert flag not in lab.get("/")[1]  # the HTML itself never holds it
    page = Page(lab.url)
    try:
        page.wait_for("document.body.dataset.lights === 'on'")
        assert page.eval("document.getElementById('flag').textContent") == flag
    finally:
        page.close()
    assert lab.stop() == 0
    assert flag.encode() not in lab.capture.read_bytes()


def test_ctrl_c_stops_everything_cleanly(start_lab):
    lab = start_lab()
    lab.expect_line("the saboteur has struck")
    page = Page(lab.url)
    try:
        page.wait_for("document.body.dataset.page === 'live'")
        assert lab.stop(signal.SIGINT) == 0, lab.log()
        # The open page notices that the device has gone.
        page.wait_for("document.body.dataset.page === 'lost'")
        assert "lost" in page.eval("document.getElementById('page-pill').textContent")
    finally:
        page.close()
    out = "".join(lab.stdout)
    assert "the capture is in" in out
    for port in (lab.mqtt_port, lab.http_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # The lights said goodbye before the broker stopped, and the file is complete.
    rows = mqtt_rows(lab.capture, lab.mqtt_port)
    assert published(rows, STATUS_TOPIC)[-1] == b"offline"
    assert any("14" in r["types"] for r in rows), "no DISCONNECT in the capture"


def test_a_second_scenario_from_a_file(start_lab):
    scenario = ROOT / "scenarios" / "port-byte-lighthouse.toml"
    lab = start_lab("--scenario", scenario)
    lab.expect_line("the saboteur has struck")
    status, html = lab.get("/")
    assert "The lighthouse of Port Byte" in html
    assert html.count('class="bulb"') == 12
    assert "FLAG{port_byte_lamp_relit_in_time}" not in html
    # Its own words: case-insensitive and trimmed; Wareville's `on` means nothing here.
    lab.pub("on", topic="harbour/lighthouse/lamp")
    lab.pub("on")
    wait_log(lab, "lights: ignored", count=1)
    assert '"lights":"off"' in lab.get("/state")[1]
    lab.pub("  lamp on \n", topic="harbour/lighthouse/lamp")
    deadline = time.monotonic() + 10
    while '"lights":"on"' not in lab.get("/state")[1]:
        assert time.monotonic() < deadline, lab.log()
        time.sleep(0.05)
    assert "FLAG{port_byte_lamp_relit_in_time}" in lab.get("/state")[1]
    assert lab.stop() == 0
    rows = mqtt_rows(lab.capture, lab.mqtt_port)
    # The device's credentials are there to find, the decoy too.
    assert "keeper" in {u for r in rows for u in r["users"]}
    assert b"PRINT nothing to see here" in published(rows, "harbour/office/printer")
    assert published(rows, "harbour/lighthouse/lamp")[0] == b"LAMP OFF"


def test_the_lights_will_marks_them_offline(mosquitto_broker, start_process):
    http_port = free_port_number()
    lights = start_process("lights", "-p", mosquitto_broker.port, "--http-port", http_port)
    wait_for_port(http_port, lights.proc)

    def status() -> str:
        out = subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto_broker.port),
             "-t", STATUS_TOPIC, "-C", "1", "-W", "5"],
            capture_output=True, text=True, timeout=15,
        )
        return out.stdout.strip()

    deadline = time.monotonic() + 10
    while status() != "off":
        assert time.monotonic() < deadline, lights.log()
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto_broker.port),
         "-t", CONTROL_TOPIC, "-m", "on"], check=True, timeout=15,
    )
    deadline = time.monotonic() + 10
    while status() != "on":
        assert time.monotonic() < deadline, lights.log()
    # Killed without a goodbye: the broker publishes the will.
    lights.proc.kill()
    lights.proc.wait()
    deadline = time.monotonic() + 10
    while status() != "offline":
        assert time.monotonic() < deadline


def test_a_busy_port_is_a_clear_error(tinsel_bin, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [str(tinsel_bin), "lab", "--mqtt-port", str(port), "--http-port",
             str(free_port_number()), "--out", str(tmp_path)],
            capture_output=True, text=True, timeout=30,
        )
    assert out.returncode == 1
    assert "--mqtt-port" in out.stderr
    assert "panicked" not in out.stderr


def test_the_page_shows_whether_the_lights_reach_the_broker(start_process, tmp_path):
    """`tinsel lights` against Mosquitto: the broker goes away and comes back."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port_number()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")

    def start_broker():
        proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(port, proc)
        return proc

    broker = start_broker()
    http_port = free_port_number()
    lights = start_process("lights", "-p", port, "--http-port", http_port)
    wait_for_port(http_port, lights.proc)
    page = Page(f"http://127.0.0.1:{http_port}/")
    try:
        page.wait_for("document.body.dataset.broker === 'connected'")
        broker.terminate()
        broker.wait(timeout=10)
        page.wait_for("document.body.dataset.broker === 'disconnected'")
        assert "disconnected" in page.eval("document.getElementById('broker-pill').textContent")
        broker = start_broker()
        page.wait_for("document.body.dataset.broker === 'connected'", timeout=30)
        # Re-subscribed: it obeys again, and the page follows without a reload.
        deadline = time.monotonic() + 15
        while page.eval("document.body.dataset.lights") != "on":
            assert time.monotonic() < deadline, lights.log()
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", CONTROL_TOPIC,
                 "-m", "on"], check=True, timeout=15,
            )
            time.sleep(0.2)
        assert page.eval("document.getElementById('flag').textContent") == DEFAULT_FLAG
    finally:
        page.close()
        broker.terminate()
        broker.wait(timeout=10)
    assert lights.stop() == 0

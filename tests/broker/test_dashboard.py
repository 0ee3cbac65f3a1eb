"""The live dashboard on the operations listener, in headless Chromium: after real MQTT
traffic the page shows the broker's numbers (clients, the busiest topic, the deepest
queue, drawn charts), loads nothing from elsewhere, and its Content-Security-Policy holds
without a single violation (an inline script injected on purpose is refused and reported,
which shows that the check would see one)."""

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import rawmqtt as raw
from brokertest import WAIT, free_port_number, uid
from test_ops import http, wait_for_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))
from lab_cdp import Page  # noqa: E402


class RecordingPage(Page):
    """A Page that keeps the DevTools events it receives (console, log, exceptions)."""

    def __init__(self, *args, **kwargs):
        self.events = []
        super().__init__(*args, **kwargs)

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def csp_violations(self):
        texts = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Log.entryAdded":
                texts.append(p["entry"].get("text", ""))
            elif e["method"] == "Runtime.consoleAPICalled":
                texts.extend(str(a.get("value", "")) for a in p.get("args", []))
        return [t for t in texts if "Content Security Policy" in t]

    def problems(self):
        """Console errors and uncaught exceptions, whatever their cause."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                # A favicon the page does not have is not a problem of the page.
                if "favicon.ico" not in p["entry"].get("url", ""):
                    out.append(p["entry"].get("text", ""))
        return out


def test_the_dashboard_shows_live_numbers_under_a_strict_csp(start_tinsel):
    hport = free_port_number()
    srv = start_tinsel("--http", f"127.0.0.1:{hport}")
    wait_for_port(hport, srv.proc)
    base = uid("dash")

    # A persistent session, offline, with five QoS 1 messages waiting for it.
    keeper = uid("keeper")
    k = raw.RawClient(srv.port)
    assert k.connect(keeper, clean=False).return_code == 0
    k.send(raw.subscribe(1, [(f"{base}/q/#", 1)]))
    k.expect(raw.SUBACK)
    k.send(raw.disconnect())
    k.close()
    for i in range(5):
        subprocess.run(["mosquitto_pub", "-p", str(srv.port), "-q", "1", "-t", f"{base}/q/x",
                        "-m", str(i)], check=True, timeout=WAIT)
    # One client stays connected; twelve messages make one topic the busiest.
    watcher = raw.RawClient(srv.port)
    assert watcher.connect(uid("watch")).return_code == 0
    busy = f"{base}/busy"
    subprocess.run(["mosquitto_pub", "-p", str(srv.port), "-t", busy, "-l"],
                   input="\n".join(f"m{i}" for i in range(12)) + "\n", text=True,
                   check=True, timeout=WAIT)

    url = f"http://127.0.0.1:{hport}/dashboard"
    with urllib.request.urlopen(url, timeout=WAIT) as r:
        csp = r.headers["Content-Security-Policy"]
        html = r.read().decode()
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    assert "unsafe-inline" not in csp
    # No inline script or style, nothing from another origin.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), html
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), html

    page = RecordingPage("about:blank")
    try:
        page.call("Log.enable")
        page.call("Runtime.enable")
        page.call("Page.navigate", url=url)
        page.wait_for("document.getElementById('status').textContent === 'live'")
        assert page.wait_for("document.getElementById('connections').textContent") == "1"
        page.wait_for(f"document.getElementById('topics').textContent.includes({json.dumps(busy)})")
        rows = page.eval("""[...document.querySelectorAll('#topics tr')]
                            .map(r => [...r.cells].map(c => c.textContent))""")
        assert rows[0][:2] == [busy, "12"], rows
        rows = page.eval("""[...document.querySelectorAll('#deepest tr')]
                            .map(r => [...r.cells].map(c => c.textContent))""")
        assert [keeper, "5", "0", "offline"] in rows, rows
        assert page.eval("document.getElementById('queued').textContent") == "5"
        # Two polls make a rate and the charts have lines.
        page.wait_for("Number(document.getElementById('chart-messages').dataset.points) >= 1")
        assert int(page.eval("document.getElementById('chart-connections').dataset.points")) >= 2
        assert page.eval("document.getElementById('rate-in').textContent") != "–"

        assert page.csp_violations() == []
        assert page.problems() == []
        # What a violation looks like: an injected inline script is refused and reported.
        page.eval("""(() => { const s = document.createElement('script');
                              s.textContent = 'window.injected = 1';
                              document.body.appendChild(s); })()""")
        page.wait_for("true")  # one more round trip for the report to arrive
        assert page.eval("window.injected === undefined") is True
        for _ in range(50):
            if page.csp_violations():
                break
            page.eval("1")
        assert page.csp_violations(), page.events[-5:]
    finally:
        page.close()
        watcher.close()

    # The data needs no token, and says what the page showed.
    status, body = http(hport, "/dashboard/data")
    assert status == 200
    data = json.loads(body)
    assert data["queued"] == 5 and data["deepest"][0]["client_id"] == keeper

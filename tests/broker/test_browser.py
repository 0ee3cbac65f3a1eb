"""MQTT.js in headless Chromium, over WebSockets and secure WebSockets: the way a browser
dashboard reaches the broker. The same page runs against Tinsel and Mosquitto.

The page is served from 127.0.0.1 by a small HTTP server in the test; MQTT.js's browser build
comes from npm (installed by scripts/install-test-peers). mosquitto_pub and mosquitto_sub on
the broker's plain listener are the other side.
"""

import os
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from brokertest import WAIT, topic_base, uid
from test_tls_ws import certs, start_listeners  # noqa: F401 (fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))
from lab_cdp import Page  # noqa: E402

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>MQTT.js</title>
<script src="mqtt.min.js"></script>
<script src="client.js"></script>
"""

# Parameters come in the page's fragment: url, v (4 or 5), id, topic.
CLIENT_JS = """
const p = new URLSearchParams(location.hash.slice(1));
const topic = p.get("topic");
window.state = { connected: false, got: [], errors: [], granted: null };
const client = mqtt.connect(p.get("url"), {
  protocolVersion: Number(p.get("v")),
  clientId: p.get("id"),
  reconnectPeriod: 0,
  connectTimeout: 5000,
});
client.on("connect", () => {
  client.subscribe(topic + "/in/#", { qos: 1 }, (err, granted) => {
    if (err) { state.errors.push(String(err)); return; }
    state.granted = granted.map((g) => g.qos);
    state.connected = true;
  });
});
client.on("message", (t, m) => state.got.push([t, new TextDecoder().decode(m)]));
client.on("error", (e) => state.errors.push(String(e)));
window.publishOut = (n) => new Promise((resolve, reject) =>
  client.publish(topic + "/out", "x".repeat(n), { qos: 1 }, (e) => (e ? reject(String(e)) : resolve(true))));
"""


def mqttjs_dist() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dist = cache / "tinsel-test-peers" / "npm" / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"
    if not dist.exists():
        pytest.fail(f"{dist} not found: run scripts/install-test-peers (npm install mqtt)")
    return dist


@pytest.fixture
def page_server(tmp_path):
    """Serves the test page and MQTT.js from a directory; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    (root / "client.js").write_text(CLIENT_JS)
    (root / "mqtt.min.js").write_bytes(mqttjs_dist().read_bytes())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("kind", ["tinsel", "mosquitto"])
@pytest.mark.parametrize("scheme, version", [("ws", 5), ("wss", 4)])
def test_mqttjs_in_chromium(kind, scheme, version, start_listeners, page_server):  # noqa: F811
    ports = start_listeners(kind)
    port = ports.ws if scheme == "ws" else ports.wss
    topic = topic_base() + "/browser"
    url = f"{scheme}://localhost:{port}/mqtt"
    # The test's CA is not in Chromium's store; the page is still checked to use TLS (the
    # broker's wss listener speaks nothing else).
    flags = ["--ignore-certificate-errors"] if scheme == "wss" else []
    page = Page(f"{page_server}#url={url}&v={version}&id={uid('js')}&topic={topic}", flags=flags)
    try:
        page.wait_for("state.connected || state.errors.length", timeout=WAIT * 2)
        assert page.eval("state.errors") == []
        assert page.eval("state.granted") == [1]

        # Into the browser: three QoS 1 messages from mosquitto_pub on the plain listener.
        sent = [(f"{topic}/in/{i}", f"from mosquitto_pub {i}") for i in range(3)]
        for t, m in sent:
            r = subprocess.run(
                ["mosquitto_pub", "-p", str(ports.plain), "-q", "1", "-t", t, "-m", m],
                capture_output=True,
                timeout=WAIT,
            )
            assert r.returncode == 0, r.stderr
        page.wait_for("state.got.length >= 3", timeout=WAIT)
        assert [tuple(g) for g in page.eval("state.got")] == sent

        # Out of the browser: a 300 kB message, more than one WebSocket frame's worth for
        # most stacks, to mosquitto_sub.
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(ports.plain), "-q", "1", "-t", f"{topic}/out", "-C", "1", "-W", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(0.5)  # mosquitto_sub prints nothing when it has subscribed
            assert page.eval("publishOut(300000)") is True
            out, err = sub.communicate(timeout=15)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        assert sub.returncode == 0, err
        assert out.rstrip(b"\n") == b"x" * 300000
    finally:
        page.close()

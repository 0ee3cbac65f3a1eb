"""Operating Tinsel: the operations HTTP listener scraped by a real Prometheus, the admin
API over plain HTTP, graceful shutdown on SIGTERM, and the logs (Mosquitto's connection
line, JSON lines, a log file, invalid levels)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import rawmqtt as raw
from brokertest import free_port_number, uid

HTTP_WAIT = 5.0


def wait_for_port(port, proc, timeout=10.0):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early with code {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def http(port, path, method="GET", token=None, body=None):
    """(status, body text) of one request to 127.0.0.1:port."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_with_http(start_tinsel, *extra):
    hport = free_port_number()
    srv = start_tinsel("--http", f"127.0.0.1:{hport}", *extra)
    wait_for_port(hport, srv.proc)
    return srv, hport


def mosquitto_pub(port, topic, message, *extra):
    subprocess.run(
        ["mosquitto_pub", "-p", str(port), "-t", topic, "-m", message, *extra],
        check=True,
        timeout=10,
    )


# ---------------------------------------------------------------- metrics, real Prometheus

def test_prometheus_scrapes_the_metrics(start_tinsel, tmp_path):
    """A real Prometheus scrapes /metrics; counters, gauges and both histograms (delivery
    latency, and the store's sync time with persistence on) are read back through its HTTP
    API, the histograms through PromQL's own histogram_quantile."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed: run scripts/install-test-peers"
    srv, hport = start_with_http(start_tinsel, "--data", str(tmp_path / "data"))
    base = uid("prom")
    sub = raw.RawClient(srv.port)
    assert sub.connect(uid("promsub")).return_code == 0
    sub.send(raw.subscribe(1, [(f"{base}/#", 0)]))
    sub.expect(raw.SUBACK)
    for i in range(7):
        mosquitto_pub(srv.port, f"{base}/m", str(i))
    for _ in range(7):
        sub.expect(raw.PUBLISH)

    pport = free_port_number()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: tinsel\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{hport}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{pport}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(pport, prom, timeout=30)

        def query(q):
            qs = urllib.parse.urlencode({"query": q})
            status, body = http(pport, f"/api/v1/query?{qs}")
            if status == 503:  # still starting (its storage is not ready)
                return None
            assert status == 200, body
            result = json.loads(body)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        deadline = time.monotonic() + 30

        def until(q, want):
            value = None
            while time.monotonic() < deadline:
                value = query(q)
                if value == want:
                    break
                time.sleep(0.5)
            return value

        received = 'tinsel_messages_received_total{qos="0"}'
        assert until(received, 7) == 7, (tmp_path / "prometheus.log").read_text()[-2000:]
        # Sent at once to the one subscriber: seven deliveries in the first bucket.
        assert query("tinsel_delivery_latency_seconds_count") == 7
        assert query('tinsel_delivery_latency_seconds_bucket{le="0.00005"}') == 7
        q99 = query("histogram_quantile(0.99, tinsel_delivery_latency_seconds_bucket)")
        assert q99 is not None and 0 <= q99 <= 0.00005, q99

        # More traffic shows up in the next scrapes: retained at QoS 1, which the store syncs.
        for i in range(3):
            mosquitto_pub(srv.port, f"{uid()}/m", str(i), "-r", "-q", "1")
        assert until("sum(tinsel_messages_received_total)", 10) == 10
        assert query('tinsel_messages_received_total{qos="1"}') == 3
        assert query("tinsel_retained_messages") >= 3
        assert query('up{job="tinsel"}') == 1
        syncs = query("tinsel_store_sync_seconds_count")
        assert syncs is not None and syncs >= 1, syncs
        median = query("histogram_quantile(0.5, tinsel_store_sync_seconds_bucket)")
        assert median is not None and 0 < median <= 60, median
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        log.close()
        sub.close()


# ---------------------------------------------------------------- admin API

def test_admin_api_over_http(start_tinsel):
    hport = free_port_number()
    env_token = "from-the-environment"
    os.environ["TINSEL_HTTP_TOKEN"] = env_token
    try:
        srv = start_tinsel("--http", str(hport))  # a bare port: 127.0.0.1
    finally:
        del os.environ["TINSEL_HTTP_TOKEN"]
    wait_for_port(hport, srv.proc)

    status, body = http(hport, "/api/v1/clients")
    assert status == 401, body
    c = raw.RawClient(srv.port, version=5)
    cid = uid("admin")
    assert c.connect(cid).return_code == 0
    status, body = http(hport, f"/api/v1/clients?prefix={cid}", token=env_token)
    assert status == 200, body
    assert json.loads(body)["clients"] == [
        {"client_id": cid, "connected": True, "username": None, "session_expiry": 0,
         "subscriptions": 0, "queued": 0, "inflight": 0}
    ]

    topic = uid("admin") + "/t"
    status, body = http(hport, "/api/v1/publish", "POST", env_token,
                        {"topic": topic, "payload": "kept", "retain": True})
    assert status == 200, body
    got = subprocess.run(["mosquitto_sub", "-p", str(srv.port), "-t", topic, "-C", "1", "-W", "5"],
                         capture_output=True, text=True, timeout=10)
    assert got.stdout.strip() == "kept"
    status, body = http(hport, f"/api/v1/retained?prefix={topic}", token=env_token)
    assert json.loads(body)["topics"] == [topic]

    status, body = http(hport, f"/api/v1/clients/{cid}/disconnect", "POST", env_token)
    assert status == 200, body
    seen = c.wait_closed()
    assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x98)]


def test_admin_api_is_off_without_a_token(start_tinsel):
    srv, hport = start_with_http(start_tinsel)
    status, body = http(hport, "/api/v1/clients", token="anything")
    assert status == 403
    assert "http.token" in json.loads(body)["error"]
    assert http(hport, "/healthz")[0] == 200
    assert http(hport, "/readyz") == (200, "ready\n")


def test_http_section_of_the_config_file(start_tinsel):
    hport = free_port_number()
    srv = start_tinsel(config=(
        "[[listeners]]\nport = {port}\n\n"
        f"[http]\naddress = \"127.0.0.1:{hport}\"\ntoken = \"t0k\"\n"
    ))
    wait_for_port(hport, srv.proc)
    assert http(hport, "/api/v1/retained", token="t0k")[0] == 200


# ---------------------------------------------------------------- graceful shutdown

def test_sigterm_disconnects_v5_clients_and_exits_0(tinsel_bin, tmp_path):
    port = free_port_number()
    log = open(tmp_path / "tinsel.log", "wb")
    proc = subprocess.Popen([str(tinsel_bin), "broker", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        c5 = raw.RawClient(port, version=5)
        assert c5.connect(uid("term5")).return_code == 0
        c4 = raw.RawClient(port, version=4)
        assert c4.connect(uid("term4")).return_code == 0

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        seen5 = c5.wait_closed(timeout=5)
        assert [(p.type, p.reason) for p in seen5] == [(raw.DISCONNECT, 0x8B)]
        assert c4.wait_closed(timeout=5) == []  # MQTT 3.1.1 has no DISCONNECT from the server
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "tinsel.log").read_text()
    assert "shutting down" in text
    assert "panicked" not in text


# ---------------------------------------------------------------- logs

CONNECT_LINE = re.compile(
    r"New client connected from 127\.0\.0\.1:\d+ as (\S+) \((p\d, c\d, k\d+(?:, u'[^']*')?)\)\.")


def connect_lines(text):
    return dict(CONNECT_LINE.findall(text))


def test_connection_line_as_mosquitto_writes_it(tinsel_broker):
    a, b = uid("line"), uid("line")
    mosquitto_pub(tinsel_broker.port, "x", "1", "-i", a, "-u", "alice", "-V", "mqttv5", "-k", "30")
    mosquitto_pub(tinsel_broker.port, "x", "1", "-i", b, "-V", "mqttv311", "-c")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(connect_lines(tinsel_broker.log())) < 2:
        time.sleep(0.05)
    lines = connect_lines(tinsel_broker.log())
    assert lines.get(a) == "p5, c1, k30, u'alice'", tinsel_broker.log()
    assert lines.get(b) == "p2, c0, k60", tinsel_broker.log()


def test_connection_lines_match_mosquittos(start_tinsel, start_mosquitto):
    """The same clients against both brokers: the same connection line, but for the port."""
    seen = {}
    for srv in (start_tinsel(), start_mosquitto()):
        a, b, c = uid("same"), uid("same"), uid("same")
        mosquitto_pub(srv.port, "x", "1", "-i", a, "-u", "alice", "-V", "mqttv5", "-k", "45")
        mosquitto_pub(srv.port, "x", "1", "-i", b, "-V", "mqttv311", "-c", "-k", "5")
        mosquitto_pub(srv.port, "x", "1", "-i", c, "-V", "mqttv31", "-u", "bob")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(connect_lines(srv.log())) < 3:
            time.sleep(0.05)
        lines = connect_lines(srv.log())
        seen[srv.kind] = [lines.get(a), lines.get(b), lines.get(c)]
    assert seen["tinsel"] == seen["mosquitto"], seen
    assert seen["tinsel"] == ["p5, c1, k45, u'alice'", "p2, c0, k5", "p1, c1, k60, u'bob'"]


def test_disconnection_lines_match_mosquittos(start_tinsel, start_mosquitto):
    """Each way a connection ends gives Mosquitto's line, in both brokers."""
    seen = {}
    for srv in (start_tinsel(), start_mosquitto()):
        ids = {k: uid(k) for k in ("clean", "lost", "proto", "idle", "taken")}
        c = raw.RawClient(srv.port, version=5)
        c.connect(ids["clean"])
        c.send(raw.disconnect(version=5))
        c.wait_closed()
        c = raw.RawClient(srv.port, version=4)
        c.connect(ids["lost"])
        c.close()
        c = raw.RawClient(srv.port, version=4)
        c.connect(ids["proto"])
        c.send(raw.connect(ids["proto"], version=4))  # a second CONNECT
        c.wait_closed()
        idle = raw.RawClient(srv.port, version=4)
        idle.connect(ids["idle"], keepalive=1)
        first = raw.RawClient(srv.port, version=4)
        first.connect(ids["taken"])
        second = raw.RawClient(srv.port, version=4)
        second.connect(ids["taken"])
        idle.wait_closed(timeout=5)
        first.wait_closed()
        second.close()
        deadline = time.monotonic() + 5
        while True:
            lines = {}
            for line in srv.log().splitlines():
                for k, cid in ids.items():
                    m = re.search(r"(Client " + re.escape(cid) + r" .*\.)$", line)
                    if m and k not in lines:
                        lines[k] = m.group(1).replace(cid, k)
            if len(lines) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seen[srv.kind] = lines
    assert seen["tinsel"] == seen["mosquitto"], seen
    assert seen["tinsel"]["lost"] == "Client lost closed its connection."


def test_json_lines_in_a_log_file(start_tinsel, tmp_path):
    path = tmp_path / "broker.log"
    srv = start_tinsel("--log-format", "json", "--log-file", str(path))
    cid = uid("json")
    mosquitto_pub(srv.port, "x", "1", "-i", cid)
    deadline = time.monotonic() + 5
    records = []
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if any(cid in r.get("message", "") for r in records):
            break
        time.sleep(0.05)
    mine = [r for r in records if cid in r.get("message", "")]
    assert mine and mine[0]["level"] == "INFO", records
    assert CONNECT_LINE.match(mine[0]["message"]), mine
    assert all("timestamp" in r and "target" in r for r in records)
    assert "New client" not in srv.log()  # the file, not standard error


@pytest.mark.parametrize("how", [["--log-level", "loud"], ["--log-level", "info,tinsel_core=chatty"], ["RUST_LOG=inof"]])
def test_an_invalid_log_level_is_an_error(tinsel_bin, how):
    env = dict(os.environ)
    args = [str(tinsel_bin), "broker", "-p", str(free_port_number())]
    if how[0].startswith("RUST_LOG="):
        env["RUST_LOG"] = how[0].split("=", 1)[1]
    else:
        args += how
    r = subprocess.run(args, capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid log level" in lines[0], r.stderr


def test_check_reports_an_invalid_log_level_in_the_file(tinsel_bin, tmp_path):
    cfg = tmp_path / "tinsel.toml"
    cfg.write_text('[logging]\nlevel = "verbose"\n')
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    r = subprocess.run([str(tinsel_bin), "broker", "--check", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and 'invalid log level "verbose"' in r.stderr, r.stderr


def test_an_http_port_in_use_is_an_error(tinsel_bin):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hport = taken.getsockname()[1]
        r = subprocess.run([str(tinsel_bin), "broker", "-p", str(free_port_number()),
                            "--http", f"127.0.0.1:{hport}"],
                           capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"cannot listen on 127.0.0.1:{hport}" in r.stderr, r.stderr


def test_refusals_are_counted_by_reason(start_tinsel, tinsel_bin, tmp_path):
    """Real clients refused for real reasons: mosquitto_pub with a wrong password, one with
    no credentials, and a CONNECT of an unknown protocol level; each shows in
    tinsel_connections_refused_total under its reason."""
    pw = tmp_path / "passwords"
    subprocess.run([str(tinsel_bin), "passwd", "-c", "-b", str(pw), "alice", "right"],
                   check=True, timeout=10)
    hport = free_port_number()
    srv = start_tinsel(config=(
        "[[listeners]]\nport = {port}\n\n"
        f"[access]\nallow_anonymous = false\npassword_file = \"{pw}\"\n\n"
        f"[http]\naddress = \"127.0.0.1:{hport}\"\n"
    ))
    wait_for_port(hport, srv.proc)
    for extra in (["-u", "alice", "-P", "wrong"], ["-u", "alice", "-P", "wrong"], []):
        r = subprocess.run(["mosquitto_pub", "-p", str(srv.port), "-t", "t", "-m", "x", *extra],
                           capture_output=True, timeout=10)
        assert r.returncode != 0
    c = raw.RawClient(srv.port)
    c.send(raw.connect(uid("level9"), version=9))
    assert c.expect(raw.CONNACK).return_code == 1  # unacceptable protocol version
    c.close()

    _, page = http(hport, "/metrics")
    refused = dict(re.findall(r'^tinsel_connections_refused_total\{reason="(\w+)"\} (\d+)$',
                              page, re.M))
    # The password file's refusals are Mosquitto's: "not authorized" for wrong passwords
    # and anonymous clients alike.
    assert refused["not_authorized"] == "3", page
    assert refused["unsupported_protocol_version"] == "1", page
    assert refused["max_connections"] == "0"
    assert refused["bad_user_name_or_password"] == "0"

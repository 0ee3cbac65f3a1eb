"""`tinsel broker -c mosquitto.conf`: the same Mosquitto configuration file run by Mosquitto and by
tinsel, each listener checked with mosquitto_pub / mosquitto_sub; `--check` output and errors that
name the file and line.

The file is generated here with free 127.0.0.1 ports; both brokers must accept it unchanged.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from brokertest import Broker, SubProc, WAIT, free_port_number, run_cli, topic_base

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_conf(port_a: int, port_b: int) -> str:
    """A file as a Mosquitto user writes it: comments, two listeners, general settings."""
    return f"""# Two listeners, written for Mosquitto 2.
per_listener_settings false
allow_anonymous true
persistence false

listener {port_a} 127.0.0.1
protocol mqtt

listener {port_b} 127.0.0.1
socket_domain ipv4

max_keepalive 120
max_packet_size 100000
max_inflight_messages 10
max_queued_messages 0
max_queued_bytes 0
sys_interval 5
allow_zero_length_clientid true
log_type error
log_type warning
log_type information
log_dest stderr
"""


def roundtrip(pub_port: int, sub_port: int, qos: int) -> None:
    """mosquitto_sub on one listener receives what mosquitto_pub sends to another."""
    topic = topic_base() + f"/q{qos}"
    sub = SubProc(["mosquitto_sub", "-p", str(sub_port), "-t", topic, "-q", str(qos), "-C", "1", "-W", "10"])
    try:
        # mosquitto_sub cannot say it has subscribed: retry the publication until it arrives.
        payload = f"via {pub_port} to {sub_port}".encode()
        deadline = time.monotonic() + WAIT
        while True:
            out = run_cli(["mosquitto_pub", "-p", str(pub_port), "-t", topic, "-q", str(qos), "-m", payload])
            assert out.returncode == 0, out.stderr
            try:
                assert sub.line(timeout=0.3) == payload
                return
            except AssertionError as e:
                if "no output" not in str(e) or time.monotonic() > deadline:
                    raise
    finally:
        sub.stop()




@pytest.mark.parametrize("kind", ["mosquitto", "tinsel"])
def test_same_mosquitto_conf_on_both_brokers(kind, tinsel_bin, tmp_path):
    ports = [free_port_number(), free_port_number()]
    # A name that does not say which format it is: the content decides.
    conf = tmp_path / "broker.cfg"
    conf.write_text(mosquitto_conf(*ports))
    exe = MOSQUITTO if kind == "mosquitto" else str(tinsel_bin)
    args = [exe, "-c", str(conf)] if kind == "mosquitto" else [exe, "broker", "-c", str(conf)]
    srv = Broker(args, ports, tmp_path / f"{kind}.log")
    try:
        a, b = ports
        for qos in (0, 1, 2):
            roundtrip(a, a, qos)
            roundtrip(b, b, qos)
        roundtrip(a, b, 1)
        roundtrip(b, a, 2)
    finally:
        srv.stop()
    if kind == "tinsel":
        # Every directive of this file is read: nothing was warned about.
        assert "warning:" not in srv.log(), srv.log()


def test_check_prints_the_effective_configuration(tinsel_bin, tmp_path):
    ports = [free_port_number(), free_port_number()]
    conf = tmp_path / "mosquitto.toml"  # a misleading name: the content decides
    conf.write_text(mosquitto_conf(*ports) + "autosave_interval 60\n")
    out = run_cli([str(tinsel_bin), "broker", "--check", "-c", str(conf)])
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "(Mosquitto's format)" in text
    for line in [
        f'address = "127.0.0.1"\nport = {ports[0]}',
        f'address = "127.0.0.1"\nport = {ports[1]}',
        "max_keep_alive = 120",
        "max_packet_size = 100000",
        "max_inflight = 10",
        "max_queued_messages = 9223372036854775807",
        "max_queued_bytes = 0",
        "max_connections = 10000",
        "sys_interval = 5",
        'level = "info"',
        "allow_anonymous = true",
    ]:
        assert line in text, f"{line!r} not in:\n{text}"
    n = len(mosquitto_conf(*ports).splitlines()) + 1
    assert f"warning: {conf}:{n}: Tinsel does not support autosave_interval yet; ignored" in out.stderr.decode()
    # The printed configuration is itself a valid file, read as TOML.
    printed = tmp_path / "effective.conf"
    printed.write_text(text)
    again = run_cli([str(tinsel_bin), "broker", "--check", "-c", str(printed)])
    assert again.returncode == 0, again.stderr
    assert "(TOML)" in again.stdout.decode()
    assert again.stdout.decode().split("\n", 1)[1] == text.split("\n", 1)[1]


@pytest.mark.parametrize(
    "line, message",
    [
        ("listener 99999", "listener: the port must be a number from 1 to 65535, not \"99999\""),
        ("max_inflight_messages many", "max_inflight_messages expects a whole number, not \"many\""),
        ("protocol webstuff", "protocol expects mqtt or websockets"),
        ("crlfile /etc/ssl/crl.pem", "crlfile is not supported"),
        ("tls_version tlsv1.0", "tls_version expects tlsv1.3, tlsv1.2 or tlsv1.1"),
        ("listener 0", "a listener on port 0 must name a Unix socket path"),
        ("http_dir /srv/www", "http_dir"),
        ("lisener 1883", "unknown directive \"lisener\""),
    ],
)
def test_errors_name_file_and_line(tinsel_bin, tmp_path, line, message):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"# line 1\nlistener {free_port_number()}\n\n{line}\n")
    for args in (["--check", "-c", str(conf)], ["-c", str(conf)]):
        out = run_cli([str(tinsel_bin), "broker", *args])
        assert out.returncode != 0
        err = out.stderr.decode().strip()
        assert err.startswith(f"{conf}:4: "), err
        assert message in err, err
        assert len(err.splitlines()) == 1, err


def test_mosquitto_refuses_what_tinsel_calls_malformed(tmp_path):
    """The reference: Mosquitto refuses the same malformed lines (it names the line too)."""
    for line in ["listener 99999", "protocol mqttsn", "lisener 1883", "socket_domain ipv5"]:
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {free_port_number()}\n{line}\n")
        out = subprocess.run([MOSQUITTO, "-c", str(conf)], capture_output=True, timeout=WAIT)
        assert out.returncode != 0, line
        assert f"{conf}:2" in (out.stdout + out.stderr).decode(), (line, out)


def test_check_needs_a_file(tinsel_bin):
    out = run_cli([str(tinsel_bin), "broker", "--check"])
    assert out.returncode != 0
    err = out.stderr.decode().strip()
    assert err == "tinsel broker: --check needs a file to check: tinsel broker --check -c FILE"


def test_a_mosquitto_file_becomes_tinsel_toml_and_its_log_file_is_used(tinsel_bin, tmp_path):
    """The migration guide's path: `--check` of a Debian-style mosquitto.conf prints a TOML
    file that means the same, and `log_dest file` sends the log to that file."""
    port = free_port_number()
    log = tmp_path / "mosquitto.log"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"# As Debian ships it, with a listener.\npersistence true\npersistence_location {tmp_path}/\n"
        f"log_dest file {log}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
    )
    check = lambda path: subprocess.run([str(tinsel_bin), "broker", "--check", "-c", str(path)],
                                        capture_output=True, text=True, timeout=WAIT)
    first = check(conf)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    toml = tmp_path / "tinsel.toml"
    toml.write_text(first.stdout)
    second = check(toml)
    assert second.returncode == 0, second.stderr
    body = lambda out: out.split("\n", 1)[1]  # after the line naming the file and its format
    assert body(second.stdout) == body(first.stdout)
    assert f'file = "{log}"' in first.stdout

    proc = subprocess.Popen([str(tinsel_bin), "broker", "-c", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        subprocess.run(["mosquitto_pub", "-p", str(port), "-i", "moved-over", "-t", "x", "-m", "1"],
                       check=True, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while "as moved-over" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log file"
            time.sleep(0.05)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"New client" not in err

"""`tinsel lab` with a TLS listener: the real mosquitto_pub over TLS with the lab's CA, and
tshark on the capture, which shows TLS records (ciphertext) on the TLS port and readable MQTT
on the plain one."""

import re
import shutil
import subprocess
import time

from lab_support import CONTROL_TOPIC, DEFAULT_FLAG, free_port_number, wait_for_port
from test_lab_e2e import ROOT, mqtt_rows, published, tshark

# A word only the learner sends, over TLS: if it is in the capture, TLS leaked it.
SECRET_ON = "lights-on-over-tls-5e1c"


def wait_state(lab, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = lab.get("/state")[1]
        if needle in body:
            return body
        assert time.monotonic() < deadline, f"{needle!r} never in /state: {body}\n{lab.log()}"
        time.sleep(0.05)


def tls_records(capture, port: int) -> list[tuple[bool, list[str], list[str]]]:
    """(from the broker, handshake types, record types) of each TLS frame on `port`. TLS 1.3
    shows its encrypted records' type as the opaque type 23 (application data)."""
    assert shutil.which("tshark"), "tshark is not installed: run scripts/install-test-peers"
    run = subprocess.run(
        ["tshark", "-r", str(capture),
        "-d",
        f"tcp.port=={port},tls",
        "-Y",
        f"tcp.port=={port} && tls.record",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tls.handshake.type",
        "-e",
        "tls.record.content_type",
        "-e",
        "tls.record.opaque_type"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    rows = []
    for line in out.splitlines():
        f = (line.split("\t") + [""] * 4)[:4]
        rows.append((f[0] == str(port), f[1].split(","), f[2].split(",") + f[3].split(",")))
    return rows


def test_the_lights_over_tls_and_the_learner_too(start_lab, tmp_path):
    scenario = tmp_path / "tls.toml"
    scenario.write_text(f'[words]\non = ["on", "{SECRET_ON}"]\n')
    tls_port = free_port_number()
    lab = start_lab("--scenario", scenario, "--tls-port", tls_port)
    wait_for_port(tls_port, lab.proc)
    lab.expect_line("the saboteur has struck")
    ca = lab.out / "lab-ca.pem"
    out = "".join(lab.stdout)
    # The banner names the CA and the command that uses it.
    assert f"localhost:{tls_port}" in out and str(ca) in out, out
    assert f"mosquitto_pub -h localhost -p {tls_port} --cafile {ca}" in out, out
    assert '"lights":"off"' in lab.get("/state")[1]

    # Without the CA, mosquitto_pub refuses the lab's certificate; with it, the lights obey.
    no_ca = subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(tls_port), "--capath", str(tmp_path),
         "-t", CONTROL_TOPIC, "-m", "on"],
        capture_output=True, text=True, timeout=15,
    )
    assert no_ca.returncode != 0, "a certificate from an unknown CA was accepted"
    subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(tls_port), "--cafile", str(ca),
         "-t", CONTROL_TOPIC, "-m", SECRET_ON],
        check=True, timeout=15,
    )
    assert DEFAULT_FLAG in wait_state(lab, '"lights":"on"')
    assert lab.stop() == 0, lab.log()

    raw = lab.capture.read_bytes()
    # Nothing of the TLS traffic is readable: the learner's word, the lights' CONNECT.
    assert SECRET_ON.encode() not in raw
    assert b"wareville-lights" not in raw
    # tshark sees TLS on the TLS port: three handshakes (the lights', the refused one without
    # the CA, the learner's), and application data both ways; decoded as MQTT, no topic.
    records = tls_records(lab.capture, tls_port)
    hellos = [r for r in records if not r[0] and "1" in r[1]]
    assert len(hellos) == 3, records
    assert any(r[0] and "23" in r[2] for r in records), records
    assert any(not r[0] and "23" in r[2] for r in records), records
    assert tshark(lab.capture, tls_port, "-Y", f"tcp.port=={tls_port} && mqtt.topic").strip() == ""
    # The plain port is readable: the saboteur, its topic and its `off`.
    rows = mqtt_rows(lab.capture, lab.mqtt_port)
    assert "mayor-malware" in {c for r in rows for c in r["clients"]}
    assert published(rows, CONTROL_TOPIC) == [b"off"]


def test_a_saboteur_over_tls_from_the_scenario(start_lab, tmp_path):
    # The scenario's own certificate, named relative to the scenario file.
    lab_dir = tmp_path / "mylab"
    subprocess.run([str(ROOT / "tests" / "broker" / "make-certs.sh"), str(lab_dir / "certs")], check=True, timeout=60)
    scenario = lab_dir / "sab.toml"
    # Port 0: any free port, which the banner tells.
    scenario.write_text(
        "[tls]\nport = 0\nlights = false\nsaboteur = true\n"
        'certfile = "certs/server.crt"\nkeyfile = "certs/server.key"\ncafile = "certs/ca.crt"\n'
    )
    lab = start_lab("--scenario", scenario)
    line = lab.expect_line("MQTT over TLS")
    tls_port = int(re.search(r"localhost:(\d+)", line).group(1))
    assert str(lab_dir / "certs" / "ca.crt") in line, line
    assert not (lab.out / "lab-ca.pem").exists(), "a CA was made although the scenario gave one"
    lab.expect_line("the saboteur has struck")
    wait_state(lab, '"lights":"off"')
    lab.pub("on")
    wait_state(lab, '"lights":"on"')
    assert lab.stop() == 0, lab.log()
    raw = lab.capture.read_bytes()
    # The saboteur's connection is ciphertext; the lights' is plain, and shows the `off` the
    # broker passed on to them.
    assert b"mayor-malware" not in raw and b"wareville-lights" in raw
    assert any(not r[0] and "1" in r[1] for r in tls_records(lab.capture, tls_port))
    rows = mqtt_rows(lab.capture, lab.mqtt_port)
    assert published(rows, CONTROL_TOPIC)[:2] == [b"off", b"on"]

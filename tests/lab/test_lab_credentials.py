"""A lab whose broker refuses anonymous clients (scenarios/frostfield-rink.toml): the real
mosquitto_pub is refused without credentials, tshark reads the lights' user name and password
from the capture's CONNECT, and with them mosquitto_pub -u -P switches the lights on."""

import subprocess
import time
from pathlib import Path

from test_lab_e2e import ROOT, tshark

SCENARIO = ROOT / "scenarios" / "frostfield-rink.toml"
TOPIC = "frostfield/rink/floodlights"
FLAG = "FLAG{frostfield_floodlights_logged_back_in}"


def pub(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(lab.mqtt_port), "-t", TOPIC, "-m", "on", *args],
        capture_output=True,
        text=True,
        timeout=15,
    )


def logins(capture: Path, port: int) -> set[tuple[str, str, str]]:
    """(client id, user name, password) of every CONNECT in the capture so far."""
    out = tshark(
        capture, port, "-Y", "mqtt.msgtype == 1", "-T", "fields",
        "-e", "mqtt.clientid", "-e", "mqtt.username", "-e", "mqtt.passwd",
    )
    return {tuple((line.split("\t") + ["", ""])[:3]) for line in out.splitlines()}


def test_the_learner_logs_in_with_credentials_from_the_capture(start_lab):
    lab = start_lab("--scenario", SCENARIO)
    lab.expect_line("the saboteur has struck")
    out = "".join(lab.stdout)
    assert '-u "<user name>" -P "<password>"' in out, out
    # The banner does not give the credentials away.
    assert "zamb0ni-n1ghts" not in out + lab.log()

    # Anonymous: refused, as Mosquitto words it.
    anonymous = pub(lab)
    assert anonymous.returncode != 0
    assert "not authorised" in (anonymous.stdout + anonymous.stderr).lower(), anonymous
    # A guess: refused too.
    assert pub(lab, "-u", "admin", "-P", "admin").returncode != 0
    assert '"lights":"off"' in lab.get("/state")[1]

    # The capture, read while the lab runs, holds the lights' CONNECT with their login.
    deadline = time.monotonic() + 10
    while True:
        found = {(u, p) for c, u, p in logins(lab.capture, lab.mqtt_port) if c == "rink-floodlights"}
        if found:
            break
        assert time.monotonic() < deadline, "no CONNECT of the lights in the capture"
        time.sleep(0.2)
    assert len(found) == 1, found
    ((user, password),) = found

    ok = pub(lab, "-u", user, "-P", password)
    assert ok.returncode == 0, ok.stderr
    deadline = time.monotonic() + 10
    while '"lights":"on"' not in (state := lab.get("/state")[1]):
        assert time.monotonic() < deadline, lab.log()
        time.sleep(0.05)
    assert FLAG in state
    assert lab.stop() == 0, lab.log()
    # The password file the lab wrote holds a hash, not the password.
    passwd = (lab.out / "lab-passwd").read_text()
    assert passwd.startswith(f"{user}:$7$") and password not in passwd

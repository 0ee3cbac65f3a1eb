"""`tinsel passwd` against Mosquitto itself: files it writes log in to a real `mosquitto`
(allow_anonymous false, password_file) with `mosquitto_pub -u -P`, and it edits files that
`mosquitto_passwd` wrote. Every broker listens on 127.0.0.1 on a free port.
"""

import os
import shutil
import subprocess

import pytest

from ports import free_port_number
from servers import Server

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@pytest.fixture
def passwd(tinsel_bin):
    def run(*args, stdin=None):
        return subprocess.run(
            [str(tinsel_bin), "passwd", *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def mosquitto_with(tmp_path):
    """Factory: mosquitto_with(password_file) -> a Mosquitto that requires those passwords."""
    servers = []

    def start(pwfile):
        port = free_port_number()
        cfg = tmp_path / f"mosquitto-{port}.conf"
        # Started as root, Mosquitto would become the `mosquitto` user, which cannot read
        # pytest's private tmp directory or the 0600 files both password tools create.
        user = "user root\n" if os.geteuid() == 0 else ""
        cfg.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
            f"{user}password_file {pwfile}\n"
        )
        srv = Server([MOSQUITTO, "-c", str(cfg)], port, tmp_path / f"mosquitto-{port}.log", "mosquitto")
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def logs_in(server, username, password) -> bool:
    """Whether mosquitto_pub can connect and publish with these credentials."""
    r = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(server.port), "-u", username,
         "-P", password, "-t", "t", "-m", "m", "-q", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r.returncode == 0


def test_tinsel_passwd_file_logs_in_to_mosquitto(passwd, mosquitto_with, tmp_path):
    pw = tmp_path / "pw"
    assert passwd("-c", "-b", pw, "alice", "correct horse").returncode == 0
    assert passwd("-b", "-H", "sha512", pw, "bob", "s3cr3t:!").returncode == 0
    assert passwd("-b", "-I", "2000", pw, "carol", "pässwörd").returncode == 0
    # Without -b: asked twice, read from standard input when it is not a terminal.
    r = passwd(pw, "dave", stdin="typed pw\ntyped pw\n")
    assert r.returncode == 0, r.stderr
    srv = mosquitto_with(pw)
    for user, good in [("alice", "correct horse"), ("bob", "s3cr3t:!"),
                       ("carol", "pässwörd"), ("dave", "typed pw")]:
        assert logs_in(srv, user, good), f"{user} refused\n{srv.log()}"
        assert not logs_in(srv, user, good + "x"), f"{user} accepted a wrong password"
    assert not logs_in(srv, "mallory", "correct horse")


def test_change_delete_and_convert_as_mosquitto_passwd(passwd, mosquitto_with, tmp_path):
    pw = tmp_path / "pw"
    # Start from mosquitto_passwd's own file, with a comment tinsel must keep.
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", pw, "alice", "old"], check=True)
    subprocess.run([MOSQUITTO_PASSWD, "-b", pw, "bob", "bobpw"], check=True)
    pw.write_text("# staff\n" + pw.read_text())
    assert passwd("-b", pw, "alice", "new").returncode == 0
    r = passwd("-D", pw, "bob")
    assert r.returncode == 0, r.stderr
    plain = tmp_path / "plain"
    plain.write_text("carol:carolpw\n")
    assert passwd("-U", plain).returncode == 0
    pw.write_text(pw.read_text() + plain.read_text())
    text = pw.read_text()
    assert text.startswith("# staff\nalice:$7$101$"), text
    srv = mosquitto_with(pw)
    assert logs_in(srv, "alice", "new")
    assert not logs_in(srv, "alice", "old")
    assert not logs_in(srv, "bob", "bobpw")
    assert logs_in(srv, "carol", "carolpw")


def test_mistakes_are_one_line_with_mosquitto_exit_codes(passwd, tmp_path):
    pw = tmp_path / "pw"
    cases = [
        (("-c", "-D", pw, "u"), 1, "-c and -D cannot be used together"),
        (("-H", "md5", pw, "u"), 1, "unknown hash type 'md5'"),
        (("-I", "0", "-b", pw, "u", "p"), 1, "number of iterations must be > 0"),
        ((pw, "u"), 1, "does not exist; use -c to create it"),
        (("-b", pw, "a:b", "p"), 1, "must not contain the ':' character"),
        (("-c", pw), 1, "missing arguments"),
    ]
    for args, code, text in cases:
        r = passwd(*args)
        assert r.returncode == code, (args, r)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (args, r.stderr)
    r = passwd("-c", pw, "u", stdin="one\ntwo\n")
    assert r.returncode == 2 and "passwords do not match" in r.stderr
    assert not pw.exists()
    r = passwd("-c", pw, "u", stdin="\n\n")
    assert r.returncode == 1 and "empty password" in r.stderr
    assert passwd("-c", "-b", pw, "u", "p").returncode == 0
    r = passwd("-D", pw, "nobody")
    assert r.returncode == 1 and "not found" in r.stderr

"""Helpers for the `tinsel pub/sub/rr` end-to-end tests.

Every test talks to brokers on 127.0.0.1 (Mosquitto's, from the shared fixtures, or
`tinsel broker`) and compares with Mosquitto's own clients where they exist.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest


class Proc:
    """A background client process with captured output."""

    def __init__(self, args, env=None, stdin=None):
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def wait(self, timeout=15):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"{self.args} did not finish: {len(out)} bytes out, tail={out[-200:]!r} err={err[-500:]!r}"
            )
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(args, timeout=20, input=None, env=None):
    """Runs a command to completion: (returncode, stdout bytes, stderr bytes)."""
    p = subprocess.run(
        [str(a) for a in args],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=env,
    )
    return p.returncode, p.stdout, p.stderr


MOSQ_LOG = "log_type all\nlog_dest stderr\n"


@pytest.fixture
def mosq(start_mosquitto):
    """Mosquitto's broker logging everything, so tests can wait for SUBSCRIBEs."""
    return start_mosquitto(MOSQ_LOG)


def _logs_all(server) -> bool:
    args = [str(a) for a in server.args]
    if "mosquitto" not in " ".join(args) or "-c" not in args:
        return False
    cfg = Path(args[args.index("-c") + 1])
    return "log_type all" in cfg.read_text()


def wait_subscribed(server, count, timeout=10.0):
    """Waits until the broker has received `count` SUBSCRIBE packets in total.

    With Mosquitto (log_type all) this reads its log; with other brokers it waits a
    settle time instead.
    """
    deadline = time.monotonic() + timeout
    if not _logs_all(server):
        time.sleep(1.0)
        return
    while time.monotonic() < deadline:
        if server.log().count("Received SUBSCRIBE") >= count:
            time.sleep(0.05)
            return
        time.sleep(0.05)
    raise AssertionError(f"only {server.log().count('Received SUBSCRIBE')} of {count} SUBSCRIBEs seen")


@pytest.fixture
def tinsel(tinsel_bin, tmp_path):
    """Factory: tinsel('pub', ...) -> list of args; the env isolates the defaults file."""

    def build(*args):
        return [str(tinsel_bin), *[str(a) for a in args]]

    return build


@pytest.fixture
def clean_env(tmp_path):
    """An environment whose XDG_CONFIG_HOME is empty (no defaults file)."""
    env = dict(os.environ)
    cfg = tmp_path / "xdg"
    cfg.mkdir(exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(cfg)
    env["HOME"] = str(tmp_path)
    return env


def wait_for_port_open(port, timeout=10.0):
    """Waits until something accepts connections on 127.0.0.1:port."""
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def assert_no_panic(err: bytes):
    text = err.decode(errors="replace")
    assert "panicked" not in text and "RUST_BACKTRACE" not in text, text


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    d: Path = tmp_path_factory.mktemp("certs")

    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=Tinsel Test CA")
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    (d / "wrong.ext").write_text("subjectAltName=DNS:wrong.example\nbasicConstraints=CA:FALSE\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "wrong.key", "-out", "wrong.csr",
         "-subj", "/CN=wrong.example")
    ossl("x509", "-req", "-in", "wrong.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "wrong.crt", "-days", "2", "-extfile", "wrong.ext")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
         "-subj", "/CN=tinsel-client")
    ossl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client.ext")
    return d

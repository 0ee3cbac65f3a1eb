"""Helpers for the `tinsel pub/sub/rr` end-to-end tests.

A uniquely named module (not `conftest`), so importing it never picks up another area's
conftest.
"""

import subprocess
import time
from pathlib import Path


class Proc:
    """A background client process with captured output."""

    def __init__(self, args, env=None, stdin=None, open_stdin=False):
        """`stdin` bytes are written and the pipe closed; `open_stdin` leaves an empty pipe
        open (a process reading it waits)."""
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE if stdin is not None or open_stdin else subprocess.DEVNULL,
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


def _logs_all(server) -> bool:
    args = [str(a) for a in server.args]
    if server.kind != "mosquitto" or "-c" not in args:
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

"""Servers the suites start: a process on a port of 127.0.0.1, stopped when the test ends.
A plain module (not a conftest) so that any test file can import it by name."""

import socket
import subprocess
import time
from pathlib import Path


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Server:
    """A server process on 127.0.0.1:port, stopped when the test ends.

    `kind` ("tinsel" or "mosquitto") is set by the fixture that started it: tests that treat
    the brokers differently read it, never the executable's path (a checkout under a
    directory named "mosquitto" must not turn Tinsel into the reference broker).
    """

    def __init__(self, args, port, log_path, kind):
        self.port = port
        self.args = args
        self.kind = kind
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(port, self.proc)

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

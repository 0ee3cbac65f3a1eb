"""Helpers shared by the lab's tests (kept out of conftest.py so tests can import them)."""

import socket
import subprocess
import time

CONTROL_TOPIC = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz"
STATUS_TOPIC = "d2FyZXZpbGxl/c3RhdHVz"
DEFAULT_FLAG = "THM{wareville_shines_again_over_mqtt}"


def free_port_number() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")

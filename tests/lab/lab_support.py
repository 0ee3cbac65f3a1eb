"""Helpers shared by the lab's tests (kept out of conftest.py so tests can import them)."""

import subprocess

import servers
from ports import free_port_number  # noqa: F401 (for the lab's tests)

CONTROL_TOPIC = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz"
STATUS_TOPIC = "d2FyZXZpbGxl/c3RhdHVz"
DEFAULT_FLAG = "THM{wareville_shines_again_over_mqtt}"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """As the suites' `wait_for_port`, with more time: the lab starts several processes."""
    servers.wait_for_port(port, proc, timeout)

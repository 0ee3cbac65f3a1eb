"""Fixtures for the lab's end-to-end tests: `tinsel lab` and `tinsel lights` on free ports."""

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


from lab_support import CONTROL_TOPIC, free_port_number, wait_for_port  # noqa: E402


class Process:
    """A `tinsel` process whose stdout is read line by line in the background."""

    def __init__(self, args, log_path: Path):
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self._stderr = open(log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def expect_line(self, needle: str, timeout: float = 15.0) -> str:
        """Waits for a stdout line containing `needle`."""
        deadline = time.monotonic() + timeout
        for line in list(self.stdout):
            if needle in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(
            f"no line with {needle!r} in stdout:\n{''.join(self.stdout)}\nstderr:\n{self.log()}"
        )

    def log(self) -> str:
        self._stderr.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.args[1]} did not stop within {timeout}s")
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


class Lab(Process):
    def __init__(self, tinsel_bin, out: Path, log_path: Path, *extra):
        self.mqtt_port = free_port_number()
        self.http_port = free_port_number()
        self.out = out
        super().__init__(
            [
                tinsel_bin,
                "lab",
                "--mqtt-port",
                self.mqtt_port,
                "--http-port",
                self.http_port,
                "--out",
                out,
                *extra,
            ],
            log_path,
        )
        wait_for_port(self.mqtt_port, self.proc)
        wait_for_port(self.http_port, self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def capture(self) -> Path:
        return self.out / "challenge.pcapng"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def pub(self, message: str, topic: str = CONTROL_TOPIC, host: str = "localhost"):
        """The learner's command, exactly as the scenario tells it."""
        subprocess.run(
            ["mosquitto_pub", "-h", host, "-p", str(self.mqtt_port), "-t", topic, "-m", message],
            check=True,
            timeout=15,
        )


@pytest.fixture
def start_lab(tinsel_bin, tmp_path):
    """Factory: start_lab(*extra_args) -> Lab running `tinsel lab` on free ports."""
    labs = []

    def start(*extra, out: Path | None = None) -> Lab:
        out = out or tmp_path / f"out{len(labs)}"
        lab = Lab(tinsel_bin, out, tmp_path / f"lab{len(labs)}.log", *extra)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.close()


@pytest.fixture
def start_process(tinsel_bin, tmp_path):
    """Factory: start_process(*args) -> Process running `tinsel ARGS`."""
    procs = []

    def start(*args) -> Process:
        p = Process([tinsel_bin, *args], tmp_path / f"proc{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()

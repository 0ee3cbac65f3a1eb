"""Shared pytest fixtures for Tinsel's end-to-end tests.

Every server listens on 127.0.0.1 on a free port. The `tinsel` binary is the one cargo
built (``TINSEL_BIN`` overrides; otherwise ``$CARGO_TARGET_DIR/debug/tinsel`` or
``target/debug/tinsel``). Mosquitto's own broker and clients are real peers here.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ports import free_port_number
from servers import Server, wait_for_port  # noqa: F401 (wait_for_port: for the suites)

ROOT = Path(__file__).resolve().parent.parent


def find_tinsel_bin() -> Path:
    env = os.environ.get("TINSEL_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "tinsel"


@pytest.fixture(scope="session")
def tinsel_bin() -> Path:
    path = find_tinsel_bin()
    if not path.exists():
        pytest.fail(f"{path} not found: run `cargo build --workspace` first (or set TINSEL_BIN)")
    return path


@pytest.fixture
def free_port() -> int:
    return free_port_number()


@pytest.fixture
def start_tinsel(tinsel_bin, tmp_path):
    """Factory: start_tinsel(*extra_args, config=None) -> Server running `tinsel broker`."""
    servers = []

    def start(*extra, config: str | None = None) -> Server:
        port = free_port_number()
        args = [str(tinsel_bin), "broker", "-p", str(port), *extra]
        if config is not None:
            cfg = tmp_path / f"tinsel-{port}.toml"
            cfg.write_text(config.replace("{port}", str(port)))
            args = [str(tinsel_bin), "broker", "-c", str(cfg), *extra]
        srv = Server(args, port, tmp_path / f"tinsel-{port}.log", "tinsel")
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def tinsel_broker(start_tinsel) -> Server:
    """A `tinsel broker` on a free port, with default settings."""
    return start_tinsel()


@pytest.fixture
def start_mosquitto(tmp_path):
    """Factory: start_mosquitto(extra_config="") -> Server running Mosquitto's broker."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    servers = []

    def start(extra_config: str = "") -> Server:
        port = free_port_number()
        cfg = tmp_path / f"mosquitto-{port}.conf"
        cfg.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}\n"
        )
        srv = Server([exe, "-c", str(cfg)], port, tmp_path / f"mosquitto-{port}.log", "mosquitto")
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def mosquitto_broker(start_mosquitto) -> Server:
    """Mosquitto's broker on a free port."""
    return start_mosquitto()


@pytest.fixture(params=["tinsel", "mosquitto"])
def any_broker(request, start_tinsel, start_mosquitto) -> Server:
    """Each test using this runs against both brokers: Mosquitto is the reference."""
    if request.param == "tinsel":
        return start_tinsel()
    return start_mosquitto()

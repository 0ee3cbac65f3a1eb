"""The bare connect servers of `bench/floor` (the floor `bench/floor.sh` measures brokers
against): each mode answers real connections from `tinsel bench conn`, so the floor figures
in docs/benchmarks come from servers that do the whole handshake."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from servers import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def floor_bin() -> Path:
    """Builds bench/floor (a crate outside the workspace) next to the other targets."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "floor"
    subprocess.run(
        ["cargo", "build", "--quiet", "--manifest-path", str(ROOT / "bench/floor/Cargo.toml")],
        check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)}, timeout=600)
    return target / "debug" / "tinsel-floor"


def start(floor_bin, mode, port):
    """Starts the floor server; None when the mode cannot run here (no io_uring)."""
    proc = subprocess.Popen([str(floor_bin), mode, str(port)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
    except RuntimeError:
        err = proc.stderr.read()
        if mode != "epoll" and ("io_uring" in err or "Operation not permitted" in err
                                or "Function not implemented" in err):
            return None
        pytest.fail(f"tinsel-floor {mode} exited with {proc.returncode}: {err}")
    except TimeoutError:
        proc.kill()
        pytest.fail(f"tinsel-floor {mode} is not listening on {port}")
    return proc


@pytest.mark.parametrize("mode", ["epoll", "uring", "uring-accept", "uring-batch"])
def test_floor_server_answers_every_connection(tinsel_bin, floor_bin, free_port, mode):
    proc = start(floor_bin, mode, free_port)
    if proc is None:
        pytest.skip(f"io_uring is not available here ({mode})")
    try:
        run = subprocess.run(
            [str(tinsel_bin), "bench", "conn", "-p", str(free_port), "-n", "300",
             "--connect-concurrency", "50", "--duration", "0.2", "--threads", "1",
             "--broker-pid", str(proc.pid), "--json", "--no-progress", "--time-limit", "30"],
            capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (run.stdout, run.stderr)
        c = json.loads(run.stdout)["connect"]
        assert (c["attempted"], c["connected"], c["failed"]) == (300, 300, 0)
        assert proc.poll() is None, "the floor server died during the run"
    finally:
        proc.kill()
        proc.wait()

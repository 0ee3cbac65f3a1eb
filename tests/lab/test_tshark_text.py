"""The lab guide's tshark command that prints each PUBLISH's topic and payload as text
(docs/lab/README.md, "Reading payloads as text"), run as written on a capture."""

import re
import shutil
import subprocess
from pathlib import Path

from ports import free_port_number
from servers import Server

ROOT = Path(__file__).resolve().parent.parent.parent


def documented_command() -> list[str]:
    text = (ROOT / "docs" / "lab" / "README.md").read_text()
    block = re.search(r"```sh\n\s*(tshark -r challenge\.pcapng .*?)\n\s*# ", text, re.S).group(1)
    return block.replace("\\\n", " ").split()


def test_the_documented_tshark_command_prints_topics_and_payloads_as_text(tinsel_bin, tmp_path):
    assert shutil.which("tshark"), "tshark is not installed: run scripts/install-test-peers"
    port = free_port_number()
    capture = tmp_path / "challenge.pcapng"
    broker = Server([str(tinsel_bin), "broker", "-p", str(port), "--capture", str(capture)],
                    port, tmp_path / "broker.log", "tinsel")
    try:
        for version, topic, message in (("5", "lights/porch", "off"), ("311", "a/b", "hello world")):
            subprocess.run([str(tinsel_bin), "pub", "-p", str(port), "-V", version, "-t", topic,
                            "-m", message], check=True, timeout=10)
    finally:
        broker.stop()
    cmd = documented_command()
    assert cmd[:3] == ["tshark", "-r", "challenge.pcapng"]
    cmd = [a.replace("challenge.pcapng", str(capture)).replace("tcp.port==1883", f"tcp.port=={port}")
           for a in cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["lights/porch\toff", "a/b\thello world"], out.stdout

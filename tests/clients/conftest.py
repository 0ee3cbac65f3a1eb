"""Fixtures for the `tinsel pub/sub/rr` end-to-end tests.

Every test talks to brokers on 127.0.0.1 (Mosquitto's, from the shared fixtures, or
`tinsel broker`) and compares with Mosquitto's own clients where they exist. Plain helpers
live in `clienttest.py`.
"""

import os
import subprocess
from pathlib import Path

import pytest

from clienttest import MOSQ_LOG


@pytest.fixture
def mosq(start_mosquitto):
    """Mosquitto's broker logging everything, so tests can wait for SUBSCRIBEs."""
    return start_mosquitto(MOSQ_LOG)


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

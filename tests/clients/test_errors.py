"""Errors: one clear line each, Mosquitto's exit codes, never a panic."""

import pytest

from clienttest import assert_no_panic, run


def one_line(err: bytes) -> str:
    text = err.decode()
    assert text.endswith("\n")
    assert_no_panic(err)
    return text


def test_broker_unreachable(tinsel, free_port):
    for kind, extra in (("pub", ["-m", "x"]), ("sub", []), ("rr", ["-m", "x", "-e", "r"])):
        rc, out, err = run(tinsel(kind, "-p", free_port, "-t", "t", *extra))
        assert rc == 1
        line = one_line(err)
        assert line.count("\n") == 1 and "Connection refused" in line, line
        ref_rc = run([f"mosquitto_{kind}", "-p", free_port, "-t", "t", *extra])[0]
        assert rc == ref_rc


def test_quiet_hides_errors(tinsel, free_port):
    rc, out, err = run(tinsel("pub", "-p", free_port, "-t", "t", "-m", "x", "--quiet"))
    assert (rc, out, err) == (1, b"", b"")


@pytest.fixture
def auth_broker(start_mosquitto, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("")
    run(["mosquitto_passwd", "-b", pw, "elf", "cocoa"])
    pw.chmod(0o644)
    # `user root`: when started as root, Mosquitto would otherwise switch to its own user,
    # which cannot read pytest's private temporary directory.
    return start_mosquitto(f"user root\nallow_anonymous false\npassword_file {pw}\n")


@pytest.mark.parametrize("version", ["31", "311", "5"])
def test_connection_refused_reason_and_exit_code(auth_broker, tinsel, version):
    args = ["-p", auth_broker.port, "-t", "t", "-m", "x", "-V", version]
    for creds in ([], ["-u", "elf", "-P", "wrong"]):
        rc, out, err = run(tinsel("pub", *args, *creds))
        ref_rc, _, ref_err = run(["mosquitto_pub", *args, *creds])
        assert rc == ref_rc, (err, ref_err)
        line = one_line(err)
        assert line.count("\n") == 1
        # Mosquitto's own first line, e.g. "Connection error: Connection Refused: not authorised."
        assert line.splitlines()[0].lower().startswith(ref_err.decode().splitlines()[0].lower()[:30])
    rc, _, err = run(tinsel("pub", *args, "-u", "elf", "-P", "cocoa"))
    assert rc == 0, err


def test_missing_topic_one_line_and_usage(tinsel):
    rc, out, err = run(tinsel("pub", "-m", "on"))
    assert rc == 1 and out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Error: ") and "topic" in lines[0]
    assert lines[1].startswith("Usage: tinsel pub")
    rc, _, err = run(tinsel("sub"))
    assert rc == 1 and err.decode().splitlines()[1].startswith("Usage: tinsel sub")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["pub", "-t", "a/#", "-m", "x"], "Invalid publish topic 'a/#'"),
        (["pub", "-t", "a/+/b", "-m", "x"], "Invalid publish topic"),
        (["sub", "-t", "a/#/b"], "Invalid subscription topic 'a/#/b'"),
        (["sub", "-t", "a", "-T", "x#"], "Invalid filter topic"),
        (["sub", "-t", "a", "-q", "3"], "Invalid QoS given: 3"),
        (["sub", "-t", "a", "-V", "7"], "Invalid protocol version"),
        (["sub", "-t", "a", "--bogus"], "Unknown option '--bogus'"),
        (["pub", "-t", "a", "-m", "x", "-k", "3"], "Invalid keepalive"),
        (["pub", "-t", "a", "-m", "x", "-p"], "-p argument given but no value"),
        (["pub", "-t", "a", "-m", "x", "-n"], "Only one type of message"),
        (["sub", "-t", "a", "-F", "%z"], "Invalid format specifier 'z'"),
        (["sub", "-t", "a", "-c"], "client id"),
        (["pub", "-t", "a", "-m", "x", "-D", "publish", "user-property", "a", "b"], "MQTT v5"),
        (["pub", "-t", "a", "-m", "x", "-V", "5", "-D", "publish", "receive-maximum", "3"], "not allowed"),
        (["pub", "-t", "a", "-m", "x", "-L", "http://x/y"], "Unsupported URL scheme"),
    ],
)
def test_invalid_arguments(tinsel, args, needle):
    rc, out, err = run(tinsel(*args))
    assert rc == 1 and out == b""
    text = err.decode()
    assert_no_panic(err)
    first = text.splitlines()[0]
    assert first.startswith("Error: ") and needle in first, text
    assert text.splitlines()[-1] == f"Use 'tinsel {args[0]} --help' to see usage."


def test_unreadable_file(tinsel, mosquitto_broker, tmp_path):
    rc, out, err = run(tinsel("pub", "-p", mosquitto_broker.port, "-t", "t", "-f", tmp_path / "missing.txt"))
    assert rc == 1
    line = one_line(err)
    assert line.count("\n") == 1 and "missing.txt" in line and "Unable to read file" in line


def test_unknown_host(tinsel):
    rc, out, err = run(tinsel("pub", "-h", "no-such-host.invalid", "-t", "t", "-m", "x"))
    assert rc == 1
    line = one_line(err)
    assert line.count("\n") == 1 and "no-such-host.invalid" in line


def test_refused_publish_is_a_warning_like_mosquitto(start_mosquitto, tmp_path, tinsel):
    pw = tmp_path / "passwd"
    pw.write_text("")
    run(["mosquitto_passwd", "-b", pw, "elf", "cocoa"])
    acl = tmp_path / "acl"
    acl.write_text("user elf\ntopic readwrite allowed/#\n")
    b = start_mosquitto(f"user root\nallow_anonymous false\npassword_file {pw}\nacl_file {acl}\n")
    for q in ("1", "2"):
        args = ["-p", b.port, "-u", "elf", "-P", "cocoa", "-t", "denied/x", "-q", q, "-V", "5"]
        ours = run(tinsel("pub", *args, "-m", "x"))
        ref = run(["mosquitto_pub", *args, "-m", "x"])
        assert ours == ref == (0, b"", b"Warning: Publish 1 failed: Not authorized.\n")
        ours = run(tinsel("pub", *args, "-l"), input=b"a\nb\n")
        ref = run(["mosquitto_pub", *args, "-l"], input=b"a\nb\n")
        assert ours == ref


def test_broker_limits_refused_locally_with_a_clear_line(start_mosquitto, tinsel):
    """MQTT 5 CONNACK limits: mosquitto_pub drops such messages silently (exit 0); tinsel
    says why in one line and exits 1 instead of getting disconnected."""
    b = start_mosquitto("max_qos 1\nretain_available false\nmax_packet_size 100\n")
    base = ["pub", "-p", b.port, "-V", "5", "-t", "lim"]
    for extra, needle in ((["-m", "x", "-q", "2"], "QoS 1 at most"),
                          (["-m", "x", "-r"], "retained"),
                          (["-m", "x" * 200], "maximum packet size of 100")):
        rc, out, err = run(tinsel(*base, *extra))
        assert rc == 1
        text = one_line(err)
        assert text.count("\n") == 1 and needle in text, text
    assert run(tinsel(*base, "-m", "small", "-q", "1"))[0] == 0

"""Every `tinsel pub` / `tinsel sub` flag, checked against Mosquitto's broker (whose log
shows what the client sent in CONNECT) and Mosquitto's clients."""

import os
import re
import shutil
import signal
import tempfile
import time

from clienttest import MOSQ_LOG, Proc, assert_no_panic, run, wait_subscribed


def connect_line(server, client_id_pattern):
    deadline = time.monotonic() + 5
    pat = re.compile(r"New client connected from \S+ as (" + client_id_pattern + r") \(([^)]*)\)")
    while time.monotonic() < deadline:
        m = pat.search(server.log())
        if m:
            return m.group(1), m.group(2)
        time.sleep(0.05)
    raise AssertionError("no connection seen in the broker log:\n" + server.log()[-2000:])


def sub_one(mosq, *extra, topic="f/#"):
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", topic, "-C", "1", "-q", "2", *extra])
    wait_subscribed(mosq, 1)
    return sub


# ---------------------------------------------------------------- tinsel pub

def test_pub_connect_flags_reach_the_broker(mosq, tinsel):
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "f/a", "-m", "x", "-i", "my-id", "-k", "30",
                            "-V", "5", "-c", "-u", "bob", "-x", "120"))
    assert rc == 0, err
    assert connect_line(mosq, "my-id") == ("my-id", "p5, c0, k30, u'bob'")


def test_pub_versions_in_connect(mosq, tinsel):
    for v, p in (("31", "p1"), ("311", "p2"), ("5", "p5")):
        rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "f/a", "-m", "x", "-V", v, "-i", f"v{v}"))
        assert rc == 0, err
        assert connect_line(mosq, f"v{v}")[1].startswith(p)


def test_pub_id_prefix(mosq, tinsel):
    rc, _, _ = run(tinsel("pub", "-p", mosq.port, "-t", "f/a", "-m", "x", "-I", "lights-"))
    assert rc == 0
    cid, _ = connect_line(mosq, r"lights-\d+")
    assert cid.startswith("lights-")


def test_pub_file_and_stdin_binary(mosq, tinsel, tmp_path):
    data = bytes(range(256)) * 40
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    sub = sub_one(mosq)
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/file", "-f", f))[0] == 0
    assert sub.wait()[1] == data + b"\n"
    sub = sub_one(mosq)
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/stdin", "-s"), input=data)[0] == 0
    assert sub.wait()[1] == data + b"\n"


def test_pub_null_message_and_retain(mosq, tinsel):
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/ret", "-m", "kept", "-r"))[0] == 0
    rc, out, _ = run(["mosquitto_sub", "-p", mosq.port, "-t", "f/ret", "-C", "1", "-F", "%r %p"])
    assert out == b"1 kept\n"
    # -n -r clears it.
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/ret", "-n", "-r"))[0] == 0
    rc, out, _ = run(["mosquitto_sub", "-p", mosq.port, "-t", "f/ret", "-W", "1"])
    assert (rc, out) == (27, b"")
    sub = sub_one(mosq, "-v")
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/null", "-n"))[0] == 0
    assert sub.wait()[1] == b"f/null (null)\n"


def test_pub_repeat_and_delay(mosq, tinsel):
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "f/rep", "-C", "3", "-F", "%p %q", "-q", "2"])
    wait_subscribed(mosq, 1)
    t0 = time.monotonic()
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "f/rep", "-m", "again", "-q", "1",
                            "--repeat", "3", "--repeat-delay", "0.2"))
    assert rc == 0, err
    assert time.monotonic() - t0 >= 0.4  # two delays between three publishes
    assert sub.wait()[1] == b"again 1\n" * 3


def test_pub_lines_with_small_window(mosq, tinsel):
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "f/l", "-C", "50", "-q", "2"])
    wait_subscribed(mosq, 1)
    data = b"".join(b"%d\n" % i for i in range(50))
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-t", "f/l", "-q", "2", "-l", "-M", "1"), input=data)
    assert rc == 0, err
    assert sub.wait()[1] == data


def test_pub_properties(mosq, tinsel):
    sub = sub_one(mosq, "-V", "5", "-F", "%P|%C|%R|%D|%F|%E")
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-V", "5", "-t", "f/p", "-m", "x",
                            "-D", "publish", "user-property", "room", "hall",
                            "-D", "publish", "content-type", "text/plain",
                            "-D", "publish", "response-topic", "f/reply",
                            "-D", "publish", "correlation-data", "c1",
                            "-D", "publish", "payload-format-indicator", "1",
                            "-D", "publish", "message-expiry-interval", "3600",
                            "-D", "connect", "user-property", "who", "me",
                            "-D", "disconnect", "session-expiry-interval", "0"))
    assert rc == 0, err
    out = sub.wait()[1]
    assert re.fullmatch(rb"room:hall\|text/plain\|f/reply\|c1\|1\|3(600|599)\n", out), out


def test_pub_url(mosq, tinsel):
    sub = sub_one(mosq, "-v")
    rc, _, err = run(tinsel("pub", "-L", f"mqtt://127.0.0.1:{mosq.port}/f/url", "-m", "via url"))
    assert rc == 0, err
    assert sub.wait()[1] == b"f/url via url\n"


def test_pub_bind_address_and_nodelay(mosq, tinsel):
    sub = sub_one(mosq)
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-A", "127.0.0.1", "--nodelay", "-t", "f/b", "-m", "bound"))
    assert rc == 0, err
    assert sub.wait()[1] == b"bound\n"


def test_pub_unix_socket(start_mosquitto, tinsel):
    # Mosquitto may drop privileges before binding the socket: use a directory anyone can
    # write, outside pytest's private temporary tree.
    d = tempfile.mkdtemp(prefix="tinsel-unix-")
    os.chmod(d, 0o777)
    path = os.path.join(d, "mqtt.sock")
    try:
        mosq = start_mosquitto(MOSQ_LOG + f"listener 0 {path}\n")
        sub = sub_one(mosq)
        rc, _, err = run(tinsel("pub", "--unix", path, "-t", "f/unix", "-m", "over unix"))
        assert rc == 0, err
        assert sub.wait()[1] == b"over unix\n"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pub_debug_output(mosq, tinsel):
    rc, out, err = run(tinsel("pub", "-p", mosq.port, "-t", "f/d", "-m", "dbg", "-q", "1", "-d"))
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines == [
        "Client (null) sending CONNECT",
        "Client (null) received CONNACK (0)",
        "Client (null) sending PUBLISH (d0, q1, r0, m1, 'f/d', ... (3 bytes))",
        "Client (null) received PUBACK (Mid: 1, RC:0)",
        "Client (null) sending DISCONNECT",
    ]


def test_will_is_sent_when_client_dies(mosq, tinsel):
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "f/will", "-C", "1", "-F", "%p %q %r", "-q", "2"])
    wait_subscribed(mosq, 1)
    victim = Proc(tinsel("sub", "-p", mosq.port, "-t", "f/nothing", "-k", "5",
                         "--will-topic", "f/will", "--will-payload", "gone", "--will-qos", "1", "--will-retain"))
    wait_subscribed(mosq, 2)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    rc, out, _ = sub.wait()
    # Live delivery of a retained will: the subscriber sees retain 0, QoS min(1, 2) = 1.
    assert out == b"gone 1 0\n"
    rc, out, _ = run(["mosquitto_sub", "-p", mosq.port, "-t", "f/will", "-C", "1", "-F", "%p %r"])
    assert out == b"gone 1\n"


def test_will_not_sent_on_normal_exit(mosq, tinsel):
    # The watcher subscribes before tinsel pub connects, so a will published when it leaves
    # would reach it; the marker, sent once the broker has seen tinsel pub go, must be the
    # first (and only) message it gets.
    watcher = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "f/w2", "-C", "1", "-v", "-q", "1"])
    wait_subscribed(mosq, 1)
    rc, _, err = run(tinsel("pub", "-p", mosq.port, "-i", "will-holder", "-t", "f/x", "-m", "x",
                            "--will-topic", "f/w2", "--will-payload", "no"))
    assert rc == 0, err
    gone = re.compile(r"Client will-holder (disconnected|closed its connection)")
    deadline = time.monotonic() + 5
    while not gone.search(mosq.log()):
        assert time.monotonic() < deadline, "the broker never saw tinsel pub leave:\n" + mosq.log()[-2000:]
        time.sleep(0.05)
    assert run(["mosquitto_pub", "-p", mosq.port, "-t", "f/w2", "-m", "marker", "-q", "1"])[0] == 0
    assert watcher.wait()[1] == b"f/w2 marker\n"


# ---------------------------------------------------------------- tinsel sub

def test_sub_several_topics_filter_out_and_count(mosq, tinsel):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "a/#", "-t", "b/+", "-T", "a/secret/#", "-C", "3", "-v"))
    wait_subscribed(mosq, 1)
    for t, m in (("a/1", "one"), ("a/secret/x", "hidden"), ("b/2", "two"), ("c/3", "no"), ("a/4", "four"), ("a/5", "extra")):
        run(["mosquitto_pub", "-p", mosq.port, "-t", t, "-m", m])
    rc, out, err = sub.wait()
    assert rc == 0, err
    assert out == b"a/1 one\nb/2 two\na/4 four\n"


def test_sub_unsubscribe(mosq, tinsel):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "u/#", "-t", "v/#", "-U", "u/#", "-C", "1", "-v"))
    wait_subscribed(mosq, 1)
    time.sleep(0.3)  # the UNSUBSCRIBE follows the SUBACK
    run(["mosquitto_pub", "-p", mosq.port, "-t", "u/1", "-m", "dropped"])
    run(["mosquitto_pub", "-p", mosq.port, "-t", "v/1", "-m", "kept"])
    assert sub.wait()[1] == b"v/1 kept\n"


def test_sub_exit_after_subscribe(mosq, tinsel):
    rc, out, err = run(tinsel("sub", "-p", mosq.port, "-t", "e/#", "-E"), timeout=10)
    assert (rc, out) == (0, b""), err


def test_sub_timeout_exit_27(mosq, tinsel):
    rc, out, err = run(tinsel("sub", "-p", mosq.port, "-t", "w/#", "-W", "1"))
    ref = run(["mosquitto_sub", "-p", mosq.port, "-t", "w/#", "-W", "1"])
    assert (rc, out, err) == (27, b"", b"Timed out\n")
    assert (rc, out, err) == ref


def test_sub_retained_flags(mosq, tinsel):
    run(["mosquitto_pub", "-p", mosq.port, "-t", "r/old", "-m", "stale", "-r"])
    # -R: retained messages are not printed.
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "r/#", "-R", "-C", "1", "-v"))
    wait_subscribed(mosq, 1)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "r/new", "-m", "fresh"])
    assert sub.wait()[1] == b"r/new fresh\n"
    # --retained-only: prints retained, exits at the first live message.
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "r/#", "--retained-only", "-v"))
    wait_subscribed(mosq, 2)
    time.sleep(0.2)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "r/live", "-m", "live"])
    rc, out, _ = sub.wait()
    assert (rc, out) == (0, b"r/old stale\n")
    # --remove-retained clears what it receives.
    rc, out, _ = run(tinsel("sub", "-p", mosq.port, "-t", "r/#", "--remove-retained", "-C", "1", "-v"))
    assert (rc, out) == (0, b"r/old stale\n")
    rc, out, _ = run(["mosquitto_sub", "-p", mosq.port, "-t", "r/#", "-W", "1"])
    assert (rc, out) == (27, b"")


def test_sub_retain_as_published(mosq, tinsel):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-V", "5", "-t", "rap/#", "--retain-as-published", "-C", "1", "-F", "%r %p"))
    wait_subscribed(mosq, 1)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "rap/1", "-m", "kept", "-r"])
    assert sub.wait()[1] == b"1 kept\n"
    run(["mosquitto_pub", "-p", mosq.port, "-t", "rap/1", "-n", "-r"])


def test_sub_persistent_session(mosq, tinsel):
    """-c with -i and -q 1: messages published while away arrive on return; -x sets the
    MQTT 5 session expiry."""
    for version in (["-V", "311"], ["-V", "5", "-x", "60"]):
        rc, _, err = run(tinsel("sub", "-p", mosq.port, "-t", "ps/#", "-q", "1", "-c", "-i", "keeper", "-E", *version))
        assert rc == 0, err
        run(["mosquitto_pub", "-p", mosq.port, "-t", "ps/1", "-m", "while away", "-q", "1"])
        rc, out, err = run(tinsel("sub", "-p", mosq.port, "-t", "ps/#", "-q", "1", "-c", "-i", "keeper", "-C", "1", "-v", *version))
        assert (rc, out) == (0, b"ps/1 while away\n"), err


def test_sub_random_filter(mosq, tinsel):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "rf", "--random-filter", "50", "-W", "3"))
    wait_subscribed(mosq, 1)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "rf", "-l"], input=b"x\n" * 200)
    rc, out, _ = sub.wait()
    assert rc == 27
    assert 20 < out.count(b"\n") < 180


def test_sub_keepalive_pings(mosq, tinsel):
    sub = Proc(tinsel("sub", "-p", mosq.port, "-t", "ka", "-k", "5", "-d", "-W", "7"))
    rc, out, _ = sub.wait()
    assert rc == 27
    assert b"Client (null) sending PINGREQ" in out
    assert b"Client (null) received PINGRESP" in out


def test_sub_url_and_help(mosq, tinsel):
    sub = Proc(tinsel("sub", "-L", f"mqtt://127.0.0.1:{mosq.port}/url/#", "-C", "1", "-v"))
    wait_subscribed(mosq, 1)
    run(["mosquitto_pub", "-p", mosq.port, "-t", "url/x", "-m", "y"])
    assert sub.wait()[1] == b"url/x y\n"
    for kind in ("pub", "sub", "rr"):
        rc, out, err = run(tinsel(kind, "--help"))
        assert rc == 0 and err == b""
        assert f"Usage: tinsel {kind}".encode() in out
        assert b"TLS:" in out and b"Will:" in out


def test_defaults_file(mosq, tinsel, clean_env, tmp_path):
    cfg = tmp_path / "xdg" / "tinsel"
    cfg.mkdir(parents=True)
    (cfg / "pub").write_text(f"# broker for the lab\n-p {mosq.port}\n-q 1\n")
    (cfg / "sub").write_text(f"-p {mosq.port}\n-v\n")
    sub = Proc(tinsel("sub", "-t", "df", "-C", "1"), env=clean_env)
    wait_subscribed(mosq, 1)
    rc, _, err = run(tinsel("pub", "-t", "df", "-m", "from defaults"), env=clean_env)
    assert rc == 0, err
    assert sub.wait()[1] == b"df from defaults\n"
    assert_no_panic(err)


def test_pub_debug_identical_to_mosquitto_pub(mosq, tinsel):
    auto = re.compile(rb"auto-[0-9A-F-]+")
    for version in ("311", "5"):
        for q in ("0", "1", "2"):
            args = ["-p", mosq.port, "-t", "f/dbg", "-m", "hello", "-q", q, "-r", "-V", version, "-d"]
            ours = run(tinsel("pub", *args))
            ref = run(["mosquitto_pub", *args])
            assert auto.sub(b"ID", ours[1]) == auto.sub(b"ID", ref[1])
            assert ours[0] == ref[0] == 0
    run(["mosquitto_pub", "-p", mosq.port, "-t", "f/dbg", "-r", "-n"])


def test_sub_survives_broker_restart(tmp_path, tinsel, free_port):
    """Like mosquitto_sub, tinsel sub reconnects and subscribes again when the broker comes
    back."""
    import shutil as _shutil
    import subprocess
    from clienttest import wait_for_port_open
    cfg = tmp_path / "restart.conf"
    cfg.write_text(f"listener {free_port} 127.0.0.1\nallow_anonymous true\n")
    exe = _shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sub = None
    try:
        wait_for_port_open(free_port)
        sub = Proc(tinsel("sub", "-p", free_port, "-t", "rs/#", "-C", "2", "-v"))
        time.sleep(1.0)
        run(["mosquitto_pub", "-p", free_port, "-t", "rs/1", "-m", "before"])
        broker.terminate()
        broker.wait()
        broker = subprocess.Popen([exe, "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port_open(free_port)
        # Back-off is at most a few seconds here; publish until the subscriber has it.
        deadline = time.monotonic() + 20
        while sub.proc.poll() is None and time.monotonic() < deadline:
            run(["mosquitto_pub", "-p", free_port, "-t", "rs/2", "-m", "after"])
            time.sleep(0.5)
        rc, out, err = sub.wait()
        assert rc == 0, err
        assert out == b"rs/1 before\nrs/2 after\n"
    finally:
        if sub:
            sub.kill()
        broker.terminate()
        broker.wait()


def test_pub_lines_split_like_mosquitto_pub(mosq, tinsel):
    data = b"a\n\nb\r\nlast line without newline"
    sub = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "f/lines", "-C", "8", "-F", "%l:%x"])
    wait_subscribed(mosq, 1)
    assert run(["mosquitto_pub", "-p", mosq.port, "-t", "f/lines", "-l"], input=data)[0] == 0
    assert run(tinsel("pub", "-p", mosq.port, "-t", "f/lines", "-l"), input=data)[0] == 0
    out = sub.wait()[1].split(b"\n")[:-1]
    assert out[:4] == out[4:]
    assert out[:3] == [b"1:61", b"0:", b"2:620d"]


def test_signals_disconnect_cleanly_like_mosquitto(mosq, tinsel):
    """SIGINT and SIGTERM end tinsel sub / pub -l with exit 0 and a normal DISCONNECT, so
    the will is not published (as with mosquitto_sub)."""
    watcher = Proc(["mosquitto_sub", "-p", mosq.port, "-t", "sig/#", "-v", "-W", "3"])
    wait_subscribed(mosq, 1)
    procs = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        will = ["--will-topic", f"sig/{sig.name}", "--will-payload", "gone"]
        procs.append((sig, Proc(tinsel("sub", "-p", mosq.port, "-t", "x", *will))))
        procs.append((sig, Proc(tinsel("pub", "-p", mosq.port, "-t", "x", "-l", *will), open_stdin=True)))
    time.sleep(1.0)
    for sig, p in procs:
        p.proc.send_signal(sig)
    for sig, p in procs:
        rc, _, err = p.wait()
        assert rc == 0, (sig, err)
        assert_no_panic(err)
    rc, out, _ = watcher.wait()
    assert (rc, out) == (27, b"")

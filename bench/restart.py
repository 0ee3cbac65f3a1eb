#!/usr/bin/env python3
"""Restart with a large persisted state: Tinsel (persistence in `sync` mode) beside Mosquitto
(`persistence true`), on free ports of 127.0.0.1.

For each broker: start it with an empty data directory; store RETAINED retained messages
(pipelined QoS 0 publishes, then one QoS 1 publish whose PUBACK says the connection's
earlier messages are handled); make SESSIONS persistent sessions (MQTT 3.1.1, clean session
off), each subscribed at QoS 1 to its own topic, then disconnected; queue QUEUED QoS 1
messages for each of them; stop the broker with SIGTERM (Mosquitto writes its snapshot
then); start it again and measure the time until a new client reads one of the retained
messages back, and the broker's resident memory then. Finally one offline session is
resumed to check that its queued messages came back.

    bench/restart.py [--retained 1000000] [--sessions 100000] [--queued 1] [--tinsel PATH]
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(cid: str, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    return packet(0x10, utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 600) + utf8(cid))


def publish(topic: str, payload: bytes, qos=0, retain=False, pid=1) -> bytes:
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    body = utf8(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return packet(first, body)


def subscribe(topic: str, pid=1) -> bytes:
    return packet(0x82, struct.pack("!H", pid) + utf8(topic) + bytes([1]))


async def read_packet(r: asyncio.StreamReader):
    first = (await r.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await r.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await r.readexactly(n)


async def expect(r, ptype: int):
    while True:
        first, body = await read_packet(r)
        if first >> 4 == ptype:
            return first, body


async def open_conn(port, cid, clean=True):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(connect(cid, clean))
    _, body = await expect(r, 2)
    assert body[1] == 0, f"CONNACK {body!r} for {cid}"
    return r, w


async def store_retained(port, count):
    r, w = await open_conn(port, "bench-retain")
    payload = b"r" * 32
    batch = 5000
    for start in range(0, count, batch):
        w.write(b"".join(publish(f"retained/{i // 1000}/{i}", payload, retain=True)
                         for i in range(start, min(count, start + batch))))
        await w.drain()
    w.write(publish("retained/sync", b"x", qos=1, pid=7))
    await expect(r, 4)
    w.close()


async def make_sessions(port, count, concurrency=200):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            r, w = await open_conn(port, f"bench-s{i}", clean=False)
            w.write(subscribe(f"sessions/{i}"))
            await expect(r, 9)
            w.write(b"\xe0\x00")
            await w.drain()
            w.close()

    await asyncio.gather(*(one(i) for i in range(count)))


async def queue_messages(port, sessions, queued):
    r, w = await open_conn(port, "bench-queue")
    pid = 0
    window = 64  # within the default Receive Maximum (100) of both brokers
    outstanding = 0
    for q in range(queued):
        for i in range(sessions):
            pid = pid % 65535 + 1
            w.write(publish(f"sessions/{i}", b"q%d" % q, qos=1, pid=pid))
            outstanding += 1
            if outstanding >= window:
                await w.drain()
                while outstanding > window // 2:
                    await expect(r, 4)
                    outstanding -= 1
    await w.drain()
    while outstanding:
        await expect(r, 4)
        outstanding -= 1
    w.close()


async def time_to_serve(port, deadline_s=600):
    """Seconds until a new client reads a retained message back, from now."""
    t0 = time.monotonic()
    while True:
        try:
            r, w = await open_conn(port, "bench-probe")
            break
        except (ConnectionRefusedError, ConnectionResetError, asyncio.IncompleteReadError, OSError):
            if time.monotonic() - t0 > deadline_s:
                raise
            await asyncio.sleep(0.01)
    w.write(subscribe("retained/0/7"))
    await expect(r, 9)
    try:
        _, body = await asyncio.wait_for(expect(r, 3), 30)
    except asyncio.TimeoutError:
        raise SystemExit("the restarted broker did not have the retained message: was the state saved?")
    w.close()
    return time.monotonic() - t0


async def resume_one(port, i, queued):
    r, w = await open_conn(port, f"bench-s{i}", clean=False)
    got = 0
    while got < queued:
        first, body = await asyncio.wait_for(expect(r, 3), 10)
        (pid,) = struct.unpack("!H", body[2 + struct.unpack("!H", body[:2])[0]:][:2])
        w.write(bytes([0x40, 2]) + struct.pack("!H", pid))
        got += 1
    w.close()
    return got


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(kind, tinsel, data, port):
    log = open(data.parent / f"{kind}.log", "ab")
    if kind == "tinsel":
        cfg = data.parent / "tinsel.toml"
        cfg.write_text(
            "sys_interval = 0\n[limits]\nmax_queued_messages = 1000000\nmax_connections = 1000000\n"
            f'[[listeners]]\naddress = "127.0.0.1"\nport = {port}\n'
        )
        args = [tinsel, "broker", "-c", str(cfg), "--data", str(data)]
    else:
        cfg = data.parent / "mosquitto.conf"
        cfg.write_text(
            f"allow_anonymous true\nmax_queued_messages 0\npersistence true\n"
            f"persistence_location {data}/\nlistener {port} 127.0.0.1\n"
        )
        args = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(cfg)]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def stop(proc, timeout=600):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)


async def measure(kind, a, work):
    data = work / kind / "data"
    data.mkdir(parents=True)
    # Mosquitto started as root drops to the `mosquitto` user and must still write here.
    for d in (work, work / kind, data):
        d.chmod(0o777)
    port = free_port()
    proc = start(kind, a.tinsel, data, port)
    try:
        await time_to_serve_plain(port)
        t = time.monotonic()
        await store_retained(port, a.retained)
        t_ret = time.monotonic() - t
        t = time.monotonic()
        await make_sessions(port, a.sessions)
        t_ses = time.monotonic() - t
        t = time.monotonic()
        await queue_messages(port, a.sessions, a.queued)
        t_q = time.monotonic() - t
        rss_before = rss_kib(proc.pid)
    finally:
        t = time.monotonic()
        stop(proc)
        t_stop = time.monotonic() - t
    size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    proc = start(kind, a.tinsel, data, port)
    try:
        t_serve = await time_to_serve(port)
        await asyncio.sleep(1.0)
        rss_after = rss_kib(proc.pid)
        resumed = await resume_one(port, a.sessions // 2, a.queued)
    finally:
        stop(proc)
    return {
        "broker": kind, "fill_retained_s": t_ret, "fill_sessions_s": t_ses, "fill_queued_s": t_q,
        "stop_s": t_stop, "data_mib": size / 2**20, "rss_mib_before": rss_before / 1024,
        "time_to_serve_s": t_serve, "rss_mib_after_restart": rss_after / 1024,
        "resumed_messages": resumed,
    }


async def time_to_serve_plain(port, deadline_s=30):
    t0 = time.monotonic()
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() - t0 > deadline_s:
                raise
            await asyncio.sleep(0.05)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--retained", type=int, default=1_000_000)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--queued", type=int, default=1, help="QoS 1 messages queued per offline session")
    p.add_argument("--tinsel", default=str(ROOT / "target" / "release" / "tinsel"))
    p.add_argument("--brokers", default="tinsel,mosquitto")
    a = p.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="tinsel-restart-"))
    try:
        rows = [asyncio.run(measure(kind, a, work)) for kind in a.brokers.split(",")]
    except BaseException:
        for log in work.glob("*/*.log"):
            print(f"--- {log}", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"retained {a.retained:,}, offline sessions {a.sessions:,}, queued per session {a.queued}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Two tinsel binaries (a previous one and this one) and Mosquitto on the same cases, in
# interleaved rounds, so that a change is judged against the binary before it in the same
# minutes of a noisy machine.
#
#   BASE=/path/to/old/tinsel bench/ab.sh                 # 3 rounds, pinned, every case
#   BASE=... ROUNDS=5 MODES="pinned unpinned" CASES="p2p-q1" bench/ab.sh
#   BASE=... PAIRS=200 CASES="p2p-q0 p2p-q1" bench/ab.sh     # p2p with 200 pairs (topics)
#
# Cases (as in `tinsel bench compare`, 5-second runs): p2p-q0, p2p-q1, p2p-q2, fanout-q0,
# idle-conn (5,000 connections), latency-q1-1k, latency-q1-10k, latency-q1-50k (10 pairs,
# QoS 1, paced; reported as p50, p99, p99.9 and the maximum, µs). Pinned: broker on core 0, generator on core 1 with one
# thread; unpinned: no placement, generator with two threads. Every broker listens on a
# free port of 127.0.0.1. Prints every run, then per case the median (range) of messages
# per broker CPU-second (idle-conn: KiB per connection) and the ratios new/base and
# new/mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${BASE:?set BASE to the previous tinsel binary}"
target="${CARGO_TARGET_DIR:-target}"
new="${NEW:-${target}/release/tinsel}"
rounds="${ROUNDS:-3}"
modes="${MODES:-pinned}"
cases="${CASES:-p2p-q0 p2p-q1 p2p-q2 fanout-q0 idle-conn}"
brokers="${BROKERS:-base new mosquitto}"
secs="${SECONDS_PER_RUN:-5}"
[[ -n "${NEW:-}" ]] || cargo build --release -p tinsel-cli
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

load_args() { # case -> the generator's arguments
    case "$1" in
        p2p-q0) echo "p2p -n ${PAIRS:-10} --qos 0 --size 64 --duration ${secs}" ;;
        p2p-q1) echo "p2p -n ${PAIRS:-10} --qos 1 --size 64 --window 100 --duration ${secs}" ;;
        p2p-q2) echo "p2p -n ${PAIRS:-10} --qos 2 --size 64 --window 100 --duration ${secs}" ;;
        fanout-q0) echo "fanout -n 50 --qos 0 --size 64 --duration ${secs}" ;;
        idle-conn) echo "conn -n 5000 --duration 2 --connect-concurrency 100" ;;
        latency-q1-1k) echo "p2p -n 10 --qos 1 --size 64 --rate 100 --window 100 --duration ${secs}" ;;
        latency-q1-10k) echo "p2p -n 10 --qos 1 --size 64 --rate 1000 --window 100 --duration ${secs}" ;;
        latency-q1-50k) echo "p2p -n 10 --qos 1 --size 64 --rate 5000 --window 100 --duration ${secs}" ;;
        *) echo "unknown case $1" >&2; exit 1 ;;
    esac
}

run() { # broker mode case -> one JSON line appended to ${work}/runs
    local which=$1 mode=$2 case=$3 port pid bpin="" gpin="" threads=2
    port="$(free_port)"
    if [[ "${mode}" == pinned ]]; then bpin="taskset -c 0"; gpin="taskset -c 1"; threads=1; fi
    case "${which}" in
        base | new)
            local bin="${BASE}"; [[ "${which}" == new ]] && bin="${new}"
            printf 'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = %s\n[limits]\nmax_inflight = 65535\nmax_queued_messages = 1000000\nmax_queued_bytes = 0\nmax_connections = 100000\n[logging]\nlevel = "warn"\n' \
                "${port}" > "${work}/tinsel.toml"
            ${bpin} "${bin}" broker -c "${work}/tinsel.toml" & ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 0\nmax_inflight_messages 0\nmax_queued_messages 0\nmax_connections -1\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nconnection_messages false\n' \
                "${port}" > "${work}/mosquitto.conf"
            ${bpin} mosquitto -c "${work}/mosquitto.conf" 2>/dev/null & ;;
    esac
    pid=$!
    sleep 0.5
    # shellcheck disable=SC2046
    ${gpin} "${new}" bench $(load_args "${case}") -p "${port}" --threads "${threads}" \
        --broker-pid "${pid}" --json --no-progress > "${work}/out.json" || true
    kill "${pid}"; wait "${pid}" 2>/dev/null || true
    python3 - "${which}" "${mode}" "${case}" "${work}/out.json" >> "${work}/runs" <<'PY'
import json, sys
which, mode, case, path = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception as e:
    print(json.dumps({"broker": which, "mode": mode, "case": case, "failed": str(e)})); sys.exit()
b = d.get("broker_process") or {}
r = {"broker": which, "mode": mode, "case": case, "ok": d.get("ok"),
     "per_cpu": b.get("msgs_per_cpu_s"), "cpu": b.get("cpu_s"), "rate": d.get("receive_rate")}
if case == "idle-conn":
    r["per_cpu"] = d["connect"]["rate"] / b["cpu_s"] if b.get("cpu_s") else None
    r["kib"] = b.get("rss_per_conn_kib")
for k in ("p50", "p99", "p999", "max"):
    r[k] = (d.get("latency_us") or {}).get(k)
print(json.dumps(r))
PY
    tail -n 1 "${work}/runs"
}

for ((r = 1; r <= rounds; r++)); do
    for mode in ${modes}; do
        for c in ${cases}; do
            for b in ${brokers}; do run "${b}" "${mode}" "${c}"; done
        done
    done
done

python3 - "${work}/runs" "${rounds}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault((r["mode"], r["case"]), {}).setdefault(r["broker"], []).append(r)
def med(rs, k):
    v = sorted(x[k] for x in rs if x.get(k) is not None)
    return (statistics.median(v), v[0], v[-1]) if v else None
print(f"\n{sys.argv[2]} rounds, medians (range)")
print("| placement | case | figure | base | new | mosquitto | new ÷ base | new ÷ mosquitto |")
print("|---|---|---|---|---|---|---|---|")
for (mode, case), bs in by.items():
    figures = [("per_cpu", "msg (idle-conn: conn) per broker CPU-s"), ("kib", "KiB per connection")]
    if case.startswith("latency"):
        figures += [(k, k + " µs (lower is better)") for k in ("p50", "p99", "p999", "max")]
    for k, name in figures:
        m = {b: med(rs, k) for b, rs in bs.items()}
        if not any(m.values()):
            continue
        f = lambda x: f"{x[0]:,.2f} ({x[1]:,.2f}–{x[2]:,.2f})" if x else "-"
        ratio = lambda a, b: f"{m[a][0] / m[b][0]:.2f}×" if m.get(a) and m.get(b) else "-"
        print(f"| {mode} | {case} | {name} | {f(m.get('base'))} | {f(m.get('new'))} | "
              f"{f(m.get('mosquitto'))} | {ratio('new', 'base')} | {ratio('new', 'mosquitto')} |")
PY

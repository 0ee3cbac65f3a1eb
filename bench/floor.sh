#!/usr/bin/env bash
# The connect-rate floor: Mosquitto, tinsel broker and the bare servers of bench/floor
# (epoll and io_uring) opening the same connections, pinned, in interleaved rounds.
#
#   bench/floor.sh                  # 5 rounds of 19,900 connections (about a minute)
#   bench/floor.sh 3 5000           # 3 rounds of 5,000
#   SERVERS="tinsel epoll" bench/floor.sh
#
# Each run: the server on core 0, `tinsel bench conn --broker-pid` on core 1 (100
# connections in flight, one thread), as the comparison's `conn` case. Prints each run and
# then, per server, the median (range) of broker CPU-s, connections per broker CPU-s against
# Mosquitto's, and the wall-clock rate. The servers listen on free ports of 127.0.0.1.
# Servers: mosquitto, tinsel, and the floor modes epoll, uring, uring-accept, uring-batch
# (see bench/floor/src/main.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-5}"
conns="${2:-19900}"
servers="${SERVERS:-mosquitto tinsel epoll uring}"
target="${CARGO_TARGET_DIR:-target}"

cargo build --release -p tinsel-cli
CARGO_TARGET_DIR="${target}/floor" cargo build --release --manifest-path bench/floor/Cargo.toml
tinsel="${target}/release/tinsel"
floor="${target}/floor/release/tinsel-floor"
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
[[ " ${servers} " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null \
    && { echo "mosquitto is not installed (apt install mosquitto), or leave it out of SERVERS" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run() { # server -> one JSON line appended to ${work}/runs
    local which=$1 port pid
    port="$(free_port)"
    case "${which}" in
        tinsel)
            printf 'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = %s\n[limits]\nmax_connections = %s\n[logging]\nlevel = "warn"\n' \
                "${port}" "$((conns + 100))" > "${work}/tinsel.toml"
            taskset -c 0 "${tinsel}" broker -c "${work}/tinsel.toml" & ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nconnection_messages false\nsys_interval 0\n' \
                "${port}" > "${work}/mosquitto.conf"
            taskset -c 0 mosquitto -c "${work}/mosquitto.conf" 2>/dev/null & ;;
        *)
            taskset -c 0 "${floor}" "${which}" "${port}" & ;;
    esac
    pid=$!
    sleep 0.5
    taskset -c 1 "${tinsel}" bench conn -p "${port}" -n "${conns}" --connect-concurrency 100 \
        --duration 0.5 --threads 1 --broker-pid "${pid}" --json --no-progress > "${work}/out.json"
    kill "${pid}"; wait "${pid}" 2>/dev/null || true
    python3 - "${which}" "${work}/out.json" >> "${work}/runs" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
print(json.dumps({"server": sys.argv[1], "rate": d["connect"]["rate"],
                  "cpu": d["broker_process"]["cpu_s"], "load_cpu": d["load_cpu_s"]}))
PY
    tail -n 1 "${work}/runs"
}

for ((r = 1; r <= rounds; r++)); do
    for s in ${servers}; do run "${s}"; done
done

python3 - "${work}/runs" "${conns}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["server"], []).append(r)
med = {s: statistics.median(r["cpu"] for r in rs) for s, rs in by.items()}
print(f"\n{sys.argv[2]} connections, {len(next(iter(by.values())))} rounds, pinned")
print("| server | broker CPU-s, median (range) | per broker CPU-s vs mosquitto | connections/s, median (range) |")
print("|---|---|---|---|")
for s, rs in by.items():
    cpu = sorted(r["cpu"] for r in rs)
    rate = sorted(r["rate"] for r in rs)
    vs = f"{med['mosquitto'] / med[s]:.2f}×" if "mosquitto" in med else "-"
    print(f"| {s} | {med[s]:.3f} ({cpu[0]:.3f}–{cpu[-1]:.3f}) | {vs} | "
          f"{statistics.median(rate):,.0f} ({rate[0]:,.0f}–{rate[-1]:,.0f}) |")
PY

#!/usr/bin/env bash
# System calls per delivered message, per broker: the broker's cost on loopback is mostly its
# system calls (docs/benchmarks/README.md). Runs fixed-count, rate-limited cases (no overload,
# so every broker delivers everything) with `perf stat -e raw_syscalls:sys_enter` attached to
# the broker, and prints one Markdown table.
#
#   bench/syscalls.sh [tinsel|mosquitto|rumqttd ...]     (default: all three)
#
# Needs perf with tracepoint access (root). Brokers listen on free 127.0.0.1 ports.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
tinsel="${TINSEL:-${target}/release/tinsel}"
rumqttd="${RUMQTTD:-${HOME}/.cache/tinsel-bench/rumqttd/bin/rumqttd}"
brokers=("$@")
[[ ${#brokers[@]} -gt 0 ]] || brokers=(tinsel mosquitto rumqttd)
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # broker port -> pid on stdout
    local b=$1 port=$2
    case $b in
    tinsel)
        printf 'sys_interval = 0\n[[listeners]]\naddress = "127.0.0.1"\nport = %s\n[limits]\nmax_inflight = 65535\nmax_queued_messages = 1000000\nmax_queued_bytes = 0\n[logging]\nlevel = "warn"\n' "$port" >"${tmp}/t.toml"
        "${tinsel}" broker -c "${tmp}/t.toml" >"${tmp}/$b.log" 2>&1 &
        ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 0\nmax_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_type error\n' "$port" >"${tmp}/m.conf"
        /usr/sbin/mosquitto -c "${tmp}/m.conf" >"${tmp}/$b.log" 2>&1 &
        ;;
    rumqttd)
        printf 'id = 0\n[router]\nid = 0\nmax_connections = 100000\nmax_outgoing_packet_count = 100000\nmax_segment_size = 104857600\nmax_segment_count = 10\n[v4.1]\nname = "v4-1"\nlisten = "127.0.0.1:%s"\nnext_connection_delay_ms = 0\n[v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 1048576\nmax_inflight_count = 1000\ndynamic_filters = true\n' "$port" >"${tmp}/r.toml"
        "${rumqttd}" -c "${tmp}/r.toml" >"${tmp}/$b.log" 2>&1 &
        ;;
    esac
    echo $!
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

cases=(
    "p2p-q0|p2p -n 10 --qos 0 --count 20000 --rate 5000"
    "p2p-q1|p2p -n 10 --qos 1 --count 20000 --rate 5000"
    "fanout-q0|fanout -n 50 --qos 0 --count 4000 --rate 1000"
)

echo "| case | broker | deliveries | syscalls | syscalls per delivery | broker CPU µs per delivery |"
echo "|---|---|---|---|---|---|"
for c in "${cases[@]}"; do
    id=${c%%|*}
    args=${c#*|}
    for b in "${brokers[@]}"; do
        port=$(free_port)
        pid=$(start "$b" "$port")
        wait_port "$port"
        perf stat -e raw_syscalls:sys_enter -p "$pid" -x, -o "${tmp}/perf.txt" &
        perf_pid=$!
        sleep 0.3
        # shellcheck disable=SC2086
        "${tinsel}" bench $args -p "$port" --broker-pid "$pid" --json --no-progress >"${tmp}/r.json" || true
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        python3 - "$id" "$b" "${tmp}/r.json" "${tmp}/perf.txt" <<'PY'
import json, sys
case, broker, rep, perf = sys.argv[1:5]
r = json.load(open(rep))
calls = 0
for line in open(perf):
    f = line.split(",")
    if len(f) > 2 and "raw_syscalls" in f[2]:
        calls = int(f[0])
n = r.get("received", 0)
cpu = (r.get("broker_process") or {}).get("cpu_s", 0.0)
per = f"{calls / n:.2f}" if n else "–"
us = f"{cpu * 1e6 / n:.2f}" if n else "–"
print(f"| {case} | {broker} | {n:,} | {calls:,} | {per} | {us} |")
PY
    done
done

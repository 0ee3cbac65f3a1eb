#!/usr/bin/env bash
# TLS and WebSocket costs, Tinsel beside Mosquitto, in interleaved rounds: each broker runs
# with a plain, a TLS, a WebSocket and a secure WebSocket listener on free ports of
# 127.0.0.1, pinned to core 0 (the generator on core 1, one thread), with certificates made
# for the run.
#
#   bench/tls-ws.sh                         # 3 rounds, every case
#   ROUNDS=5 CASES="tls-p2p-q1" TINSEL=/path/to/tinsel bench/tls-ws.sh
#
# Cases: tls-p2p-q1 (10 pairs, QoS 1, 64 B, 5 s over TLS), tls-conn (10,000 TLS
# connections opened and held idle), ws-p2p-q0 (10 pairs, QoS 0, 64 B, 5 s over WebSocket),
# wss-p2p-q1. Prints every run, then per case the median (range) of messages per broker
# CPU-second, handshakes per broker CPU-second and KiB per idle connection, and the ratio
# Tinsel / Mosquitto. Queues and in-flight windows are unlimited on both brokers, as in
# `tinsel bench compare`. Each broker is started afresh for each round, and the connection
# case runs on its own broker (memory freed by an earlier case would hide the cost).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
tinsel="${TINSEL:-${target}/release/tinsel}"
mosquitto="${MOSQUITTO:-/usr/sbin/mosquitto}"
rounds="${ROUNDS:-3}"
cases="${CASES:-tls-p2p-q1 tls-conn ws-p2p-q0 wss-p2p-q1}"
secs="${SECONDS_PER_RUN:-5}"
[[ -n "${TINSEL:-}" ]] || cargo build --release -p tinsel-cli
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true

work="$(mktemp -d)"
trap 'pkill -P $$ >/dev/null 2>&1 || true; rm -rf "${work}"' EXIT
bash tests/broker/make-certs.sh "${work}/certs" >/dev/null 2>&1
certs="${work}/certs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

load_args() { # case -> the generator's arguments
    case "$1" in
        tls-p2p-q1) echo "p2p -n 10 --qos 1 --size 64 --window 100 --duration ${secs} --transport tls" ;;
        tls-conn) echo "conn -n 10000 --duration 3 --connect-concurrency 100 --transport tls" ;;
        ws-p2p-q0) echo "p2p -n 10 --qos 0 --size 64 --duration ${secs} --transport ws" ;;
        wss-p2p-q1) echo "p2p -n 10 --qos 1 --size 64 --window 100 --duration ${secs} --transport wss" ;;
        *) echo "unknown case $1" >&2; exit 1 ;;
    esac
}

start() { # broker -> pid; sets the ports
    local which=$1
    plain="$(free_port)" tls="$(free_port)" ws="$(free_port)" wss="$(free_port)"
    if [[ "${which}" == tinsel ]]; then
        cat >"${work}/tinsel.toml" <<EOF
sys_interval = 0
[limits]
max_connections = 20000
max_inflight = 65535
max_queued_messages = 1000000
[[listeners]]
address = "127.0.0.1"
port = ${plain}
[[listeners]]
address = "127.0.0.1"
port = ${tls}
transport = "tls"
certfile = "${certs}/server.crt"
keyfile = "${certs}/server.key"
[[listeners]]
address = "127.0.0.1"
port = ${ws}
transport = "websocket"
[[listeners]]
address = "127.0.0.1"
port = ${wss}
transport = "websocket-tls"
certfile = "${certs}/server.crt"
keyfile = "${certs}/server.key"
EOF
        taskset -c 0 "${tinsel}" broker -c "${work}/tinsel.toml" >"${work}/broker.log" 2>&1 &
    else
        cat >"${work}/mosquitto.conf" <<EOF
user root
allow_anonymous true
persistence false
max_inflight_messages 0
max_queued_messages 0
listener ${plain} 127.0.0.1
listener ${tls} 127.0.0.1
certfile ${certs}/server.crt
keyfile ${certs}/server.key
listener ${ws} 127.0.0.1
protocol websockets
listener ${wss} 127.0.0.1
protocol websockets
certfile ${certs}/server.crt
keyfile ${certs}/server.key
EOF
        taskset -c 0 "${mosquitto}" -c "${work}/mosquitto.conf" >"${work}/broker.log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', ${wss}), 0.2)" 2>/dev/null && return
        sleep 0.1
    done
    echo "${which} did not start:" >&2
    cat "${work}/broker.log" >&2
    exit 1
}

run() { # broker case -> one JSON line appended to ${work}/runs
    local which=$1 case=$2 port
    case "${case}" in
        tls-*) port=${tls} ;;
        wss-*) port=${wss} ;;
        ws-*) port=${ws} ;;
    esac
    # shellcheck disable=SC2046
    if taskset -c 1 "${tinsel}" bench $(load_args "${case}") -p "${port}" --cafile "${certs}/ca.crt" \
        --threads 1 --broker-pid "${pid}" --json --no-progress --time-limit 120 >"${work}/out.json" 2>"${work}/err"; then :; fi
    python3 - "${which}" "${case}" "${work}/out.json" >>"${work}/runs" <<'EOF'
import json, sys
which, case, path = sys.argv[1:4]
try:
    r = json.load(open(path))
except Exception as e:
    print(json.dumps({"broker": which, "case": case, "error": f"no report: {e}"})); sys.exit()
b = r.get("broker_process") or {}
c = r["connect"]
row = {"broker": which, "case": case, "ok": r["ok"], "errors": r["errors"][:2],
       "msgs_per_cpu_s": b.get("msgs_per_cpu_s"), "cpu_s": b.get("cpu_s"),
       "rss_per_conn_kib": b.get("rss_per_conn_kib"), "connected": c["connected"],
       "receive_rate": r["receive_rate"],
       "p99_us": (r.get("latency_us") or {}).get("p99")}
if case.endswith("conn") and b.get("cpu_s"):
    row["handshakes_per_cpu_s"] = c["connected"] / b["cpu_s"]
print(json.dumps(row))
EOF
    tail -1 "${work}/runs"
}

for round in $(seq "${rounds}"); do
    for case in ${cases}; do
        for which in tinsel mosquitto; do
            start "${which}"
            run "${which}" "${case}"
            kill "${pid}"
            wait "${pid}" 2>/dev/null || true
        done
    done
done

python3 - "${work}/runs" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def figures(case, which, key):
    return [r[key] for r in rows if r["case"] == case and r["broker"] == which and r.get(key)]
print()
print("| case | figure | Tinsel median (range) | Mosquitto median (range) | Tinsel / Mosquitto |")
print("|---|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    keys = ["handshakes_per_cpu_s", "rss_per_conn_kib"] if case.endswith("conn") else ["msgs_per_cpu_s", "receive_rate", "p99_us"]
    for key in keys:
        t, m = figures(case, "tinsel", key), figures(case, "mosquitto", key)
        if not t or not m:
            continue
        tm, mm = statistics.median(t), statistics.median(m)
        cell = lambda v, med: f"{med:,.1f} ({min(v):,.1f}–{max(v):,.1f})"
        print(f"| {case} | {key} | {cell(t, tm)} | {cell(m, mm)} | {tm / mm:.2f} |")
EOF

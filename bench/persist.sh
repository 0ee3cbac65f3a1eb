#!/usr/bin/env bash
# The cost of durability: Tinsel with persistence in `sync` mode (every PUBACK after its
# fdatasync) and in memory, beside Mosquitto with `persistence true` and in memory, in
# interleaved rounds. Persistent MQTT 5 sessions (`tinsel bench --persistent`), brokers pinned
# to core 0 and the generator (one thread) to core 1, on free ports of 127.0.0.1, each broker
# started afresh with an empty data directory for each run.
#
#   bench/persist.sh                     # 3 rounds, both cases
#   ROUNDS=5 CASES="paced-q1" TINSEL=target/release/tinsel bench/persist.sh
#
# Cases: p2p-q1 (10 pairs, QoS 1, 64 B, window 100, 5 s, as fast as the broker takes them);
# paced-q1 (the same at 1,000 msg/s per pair: 10,000 msg/s). Prints every run, then per case
# the median (range) of messages per broker CPU-second, received messages per second and
# latency percentiles, for each broker and mode.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
tinsel="${TINSEL:-${target}/release/tinsel}"
mosquitto="${MOSQUITTO:-/usr/sbin/mosquitto}"
rounds="${ROUNDS:-3}"
cases="${CASES:-p2p-q1 paced-q1}"
brokers="${BROKERS:-tinsel-sync tinsel-memory mosquitto-persist mosquitto-memory}"
secs="${SECONDS_PER_RUN:-5}"
[[ -n "${TINSEL:-}" ]] || cargo build --release -p tinsel-cli
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'pkill -P $$ >/dev/null 2>&1 || true; rm -rf "${work}"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

load_args() { # case -> the generator's arguments
    local common="p2p -n 10 --qos 1 --size 64 --window 100 --duration ${secs} --mqtt 5 --persistent"
    case "$1" in
        p2p-q1) echo "${common}" ;;
        paced-q1) echo "${common} --rate 1000" ;;
        *) echo "unknown case $1" >&2; exit 1 ;;
    esac
}

start() { # broker -> pid, port
    local which=$1
    port="$(free_port)"
    rm -rf "${work}/data"
    mkdir -p "${work}/data"
    case "${which}" in
        tinsel-*)
            cat >"${work}/tinsel.toml" <<EOF
sys_interval = 0
[limits]
max_inflight = 65535
max_queued_messages = 1000000
[[listeners]]
address = "127.0.0.1"
port = ${port}
EOF
            local data=()
            [[ "${which}" == tinsel-sync ]] && data=(--data "${work}/data")
            taskset -c 0 "${tinsel}" broker -c "${work}/tinsel.toml" "${data[@]}" >"${work}/broker.log" 2>&1 &
            ;;
        mosquitto-*)
            local persist="persistence false"
            [[ "${which}" == mosquitto-persist ]] && persist="persistence true
persistence_location ${work}/data/"
            cat >"${work}/mosquitto.conf" <<EOF
allow_anonymous true
max_inflight_messages 0
max_queued_messages 0
${persist}
listener ${port} 127.0.0.1
EOF
            taskset -c 0 "${mosquitto}" -c "${work}/mosquitto.conf" >"${work}/broker.log" 2>&1 &
            ;;
    esac
    pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', ${port}), 0.2)" 2>/dev/null && return
        sleep 0.1
    done
    echo "${which} did not start:" >&2
    cat "${work}/broker.log" >&2
    exit 1
}

for round in $(seq "${rounds}"); do
    for case in ${cases}; do
        for which in ${brokers}; do
            start "${which}"
            # shellcheck disable=SC2046
            taskset -c 1 "${tinsel}" bench $(load_args "${case}") -p "${port}" --threads 1 \
                --broker-pid "${pid}" --json --no-progress --time-limit 120 >"${work}/out.json" 2>"${work}/err" || true
            kill "${pid}"
            wait "${pid}" 2>/dev/null || true
            python3 - "${which}" "${case}" "${work}/out.json" >>"${work}/runs" <<'EOF'
import json, sys
which, case, path = sys.argv[1:4]
try:
    r = json.load(open(path))
except Exception as e:
    print(json.dumps({"broker": which, "case": case, "error": f"no report: {e}"})); sys.exit()
b = r.get("broker_process") or {}
lat = r.get("latency_us") or {}
print(json.dumps({"broker": which, "case": case, "ok": r["ok"], "errors": r["errors"][:2],
                  "msgs_per_cpu_s": b.get("msgs_per_cpu_s"), "receive_rate": r["receive_rate"],
                  "p50_us": lat.get("p50"), "p99_us": lat.get("p99"), "p999_us": lat.get("p999"),
                  "max_us": lat.get("max")}))
EOF
            tail -1 "${work}/runs"
        done
    done
done

python3 - "${work}/runs" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| case | broker | messages per broker CPU-s | received msg/s | p50 µs | p99 µs | p99.9 µs | runs ok |")
print("|---|---|---|---|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    for which in dict.fromkeys(r["broker"] for r in rows):
        rs = [r for r in rows if r["case"] == case and r["broker"] == which]
        def cell(key):
            v = [r[key] for r in rs if r.get(key) is not None]
            return f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "–"
        ok = sum(1 for r in rs if r.get("ok"))
        print(f"| {case} | {which} | {cell('msgs_per_cpu_s')} | {cell('receive_rate')} | "
              f"{cell('p50_us')} | {cell('p99_us')} | {cell('p999_us')} | {ok}/{len(rs)} |")
EOF

#!/usr/bin/env bash
# The cost of access control: Tinsel open beside Tinsel with a password file and a generated
# 1,000-line ACL file (p2p QoS 0 and QoS 1, messages per broker CPU-second), and CONNECTs
# checked against a PBKDF2 password file, Tinsel beside Mosquitto on the same files, in
# interleaved rounds. Brokers are pinned to core 0 and started afresh for every run; the
# generator runs on core 1 with one thread.
#
#   bench/access.sh                          # 3 rounds, every case
#   ROUNDS=5 CASES="p2p-q1" TINSEL=/path/to/tinsel bench/access.sh
#
# Cases: p2p-q0 and p2p-q1 (10 pairs, 64 B, 5 s; open against access; every client logs in
# as `bench`), conn (2,000 connections, 100 at a time from 8 source addresses, each logging
# in as `bench`; Tinsel against Mosquitto 2; from one address Tinsel would refuse the CONNECTs
# beyond 16 password checks pending per address, see crates/broker/src/file_access.rs). Prints every run, then per case the median (range) of each broker's
# figure and the ratio. The ACL holds the rules of 498 other users and 2 patterns besides
# `bench`'s own; the password file is written by `tinsel passwd` (PBKDF2-SHA512, 101
# iterations, as mosquitto_passwd's default).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
tinsel="${TINSEL:-${target}/release/tinsel}"
mosquitto="${MOSQUITTO:-/usr/sbin/mosquitto}"
rounds="${ROUNDS:-3}"
cases="${CASES:-p2p-q0 p2p-q1 conn}"
secs="${SECONDS_PER_RUN:-5}"
[[ -n "${TINSEL:-}" ]] || cargo build --release -p tinsel-cli
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true

work="$(mktemp -d)"
trap 'pkill -P $$ >/dev/null 2>&1 || true; rm -rf "${work}"' EXIT
chmod 755 "${work}"
"${tinsel}" passwd -c -b "${work}/passwd" bench "bench-secret" >/dev/null
{
    echo "pattern read \$SYS/broker/load/#"
    echo "pattern readwrite clients/%c/#"
    echo "user bench"
    echo "topic readwrite tinsel-bench/#"
    for i in $(seq 1 498); do
        echo "user user${i}"
        echo "topic readwrite site/${i}/#"
    done
} >"${work}/acl"
chmod 644 "${work}/passwd" "${work}/acl"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

load_args() { # case -> the generator's arguments
    case "$1" in
        p2p-q0) echo "p2p -n 10 --qos 0 --size 64 --duration ${secs}" ;;
        p2p-q1) echo "p2p -n 10 --qos 1 --size 64 --window 100 --duration ${secs}" ;;
        conn) echo "conn -n 2000 --duration 1 --connect-concurrency 100 --source-addrs 8" ;;
        *) echo "unknown case $1" >&2; exit 1 ;;
    esac
}

start() { # broker (open, access, mosquitto) -> pid, port
    local which=$1
    port="$(free_port)"
    case "${which}" in
        open | access)
            {
                echo "sys_interval = 0"
                echo "[limits]"
                echo "max_connections = 20000"
                echo "max_inflight = 65535"
                echo "max_queued_messages = 1000000"
                if [[ "${which}" == access ]]; then
                    echo "[access]"
                    echo "allow_anonymous = false"
                    echo "password_file = \"${work}/passwd\""
                    echo "acl_file = \"${work}/acl\""
                fi
                echo "[[listeners]]"
                echo "address = \"127.0.0.1\""
                echo "port = ${port}"
            } >"${work}/tinsel.toml"
            taskset -c 0 "${tinsel}" broker -c "${work}/tinsel.toml" >"${work}/broker.log" 2>&1 &
            ;;
        mosquitto)
            cat >"${work}/mosquitto.conf" <<EOF
user root
persistence false
max_inflight_messages 0
max_queued_messages 0
listener ${port} 127.0.0.1
allow_anonymous false
password_file ${work}/passwd
acl_file ${work}/acl
EOF
            taskset -c 0 "${mosquitto}" -c "${work}/mosquitto.conf" >"${work}/broker.log" 2>&1 &
            ;;
    esac
    pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', ${port}), 0.2)" 2>/dev/null && return
        sleep 0.1
    done
    echo "${which} did not start:" >&2
    cat "${work}/broker.log" >&2
    exit 1
}

run() { # broker case -> one JSON line appended to ${work}/runs
    local which=$1 case=$2
    # shellcheck disable=SC2046
    if taskset -c 1 "${tinsel}" bench $(load_args "${case}") -p "${port}" -u bench -P bench-secret \
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
       "connected": c["connected"], "receive_rate": r["receive_rate"]}
if case == "conn" and b.get("cpu_s"):
    row["connects_per_cpu_s"] = c["connected"] / b["cpu_s"]
print(json.dumps(row))
EOF
    tail -1 "${work}/runs"
}

for round in $(seq "${rounds}"); do
    for case in ${cases}; do
        if [[ "${case}" == conn ]]; then brokers="access mosquitto"; else brokers="open access"; fi
        for which in ${brokers}; do
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
print("| case | figure | first median (range) | second median (range) | second / first |")
print("|---|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    a, b = ("access", "mosquitto") if case == "conn" else ("open", "access")
    key = "connects_per_cpu_s" if case == "conn" else "msgs_per_cpu_s"
    x, y = figures(case, a, key), figures(case, b, key)
    if not x or not y:
        continue
    xm, ym = statistics.median(x), statistics.median(y)
    cell = lambda v, med: f"{med:,.0f} ({min(v):,.0f}–{max(v):,.0f})"
    print(f"| {case} | {key}: {a} / {b} | {cell(x, xm)} | {cell(y, ym)} | {ym / xm:.3f} |")
EOF

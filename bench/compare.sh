#!/usr/bin/env bash
# Compare tinsel broker, Mosquitto and rumqttd side by side.
#
#   bench/compare.sh            # full suite, pinned and unpinned (about 25 minutes)
#   bench/compare.sh --quick    # short runs, 2,000 idle connections (about 5 minutes)
#   bench/compare.sh --brokers mosquitto,rumqttd --modes pinned --cases p2p-q0
#
# Builds `tinsel` in release, installs rumqttd 0.20.0 into ~/.cache/tinsel-bench/rumqttd
# when missing (a several-minute compile, once), raises the open-file limit to the hard
# limit, and runs `tinsel bench compare`, which writes docs/benchmarks/results.md,
# results.json and chart-*.svg. Every broker listens on 127.0.0.1 on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p tinsel-cli

cache="${HOME}/.cache/tinsel-bench"
rumqttd="${cache}/rumqttd/bin/rumqttd"
if [[ ! -x "${rumqttd}" ]]; then
    echo "installing rumqttd 0.20.0 into ${cache}/rumqttd (takes a few minutes)" >&2
    CARGO_TARGET_DIR="${cache}/rumqttd-target" \
        cargo install rumqttd --version 0.20.0 --root "${cache}/rumqttd"
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed for pinned runs" >&2; exit 1; }

# 20,000 idle connections need as many file descriptors in the broker and in the load generator.
ulimit -n "$(ulimit -Hn)" || true

exec "${target}/release/tinsel" bench compare --verbose --rumqttd "${rumqttd}" "$@"

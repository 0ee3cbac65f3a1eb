#!/usr/bin/env bash
# Short smoke run of every cargo-fuzz target.
#
#   fuzz/smoke.sh                 # 20 s per target
#   FUZZ_SECONDS=120 fuzz/smoke.sh
#
# Installs cargo-fuzz if missing. Only a stable toolchain is assumed: cargo-fuzz needs
# nightly flags (-Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks on stable.
# Exits non-zero if any target crashes (the input is left in fuzz/artifacts/<target>/).
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# A failing `cargo fuzz list` must fail the script (a `for` over `$(...)` would hide it).
targets="$(cargo fuzz list)"
if [ -z "$targets" ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

status=0
for target in $targets; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    if [ -d "seeds/$target" ]; then
        seeds=("seeds/$target")
    fi
    echo "== fuzzing $target for ${seconds}s" >&2
    if ! cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1; then
        echo "!! $target crashed; see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"

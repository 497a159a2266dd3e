#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each and prints executions per target.
#
#   scripts/fuzz.sh 10                 # every target, 10 minutes each
#   scripts/fuzz.sh 20s                # every target, 20 seconds each (a CI smoke run)
#   scripts/fuzz.sh 10 rpc_decode      # only the named targets
#   JOBS=2 scripts/fuzz.sh 10          # two targets at a time (one per core)
#
# The committed seeds in fuzz/corpus/<target>/ are read, never written: new inputs go to
# fuzz/target/corpus/<target>/ and crashes to fuzz/target/artifacts/<target>/. Exits non-zero
# if any target found a crash, a leak, a timeout or an out-of-memory input.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets it use a stable toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
    *s) seconds=${1%s} ;;
    *m) seconds=$(( ${1%m} * 60 )) ;;
    *) seconds=$(( $1 * 60 )) ;;
esac
shift
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage

export RUSTC_BOOTSTRAP=1
# Lock identities would otherwise ask getent for the FQDN at every open.
export BORG_HOST_ID=${BORG_HOST_ID:-fuzz@localhost}
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
jobs=${JOBS:-1}

cargo fuzz build -O
triple=$(rustc -vV | sed -n 's/^host: //p')

logs=target/fuzz-logs
mkdir -p "$logs"

run_target() {
    local target=$1
    mkdir -p "target/corpus/$target" "target/artifacts/$target"
    # -malloc_limit_mb catches a single allocation sized from an untrusted length;
    # -timeout catches hangs.
    # The binaries built above, run directly: editing the crate meanwhile cannot trigger a
    # rebuild in the middle of a run.
    "target/$triple/release/$target" "target/corpus/$target" "corpus/$target" \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix="target/artifacts/$target/" \
        >"$logs/$target.log" 2>&1
}

failed=0
running=0
pids=()
names=()
for target in "${targets[@]}"; do
    run_target "$target" &
    pids+=($!)
    names+=("$target")
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
statuses=()
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then statuses+=(0); else statuses+=($?); fi
done

printf '\n%-20s %12s %10s %8s  %s\n' target execs execs/s corpus result
for i in "${!names[@]}"; do
    target=${names[$i]}
    log="$logs/$target.log"
    execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
    rate=$(awk '/stat::average_exec_per_sec:/ {print $2}' "$log" | tail -1)
    corpus=$(ls "target/corpus/$target" 2>/dev/null | wc -l)
    # wait may report the status of an already reaped job as 127; the log is the truth.
    if grep -qE '^(==[0-9]+==ERROR|SUMMARY: libFuzzer|thread .* panicked)' "$log"; then
        result="FOUND: see $log and target/artifacts/$target/"
        failed=1
    elif [ -z "$execs" ]; then
        result="DID NOT RUN (status ${statuses[$i]}): see $log"
        failed=1
    else
        result=ok
    fi
    printf '%-20s %12s %10s %8s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
exit "$failed"

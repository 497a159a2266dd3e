#!/usr/bin/env bash
# borg-gate's engine against Python `borg serve` 1.4.5, in one command.
#
#   bench/run.sh            full sizes (1 GiB put/get, 200k small files, 1M and 5M objects)
#   bench/run.sh --quick    smoke-test sizes
#   bench/run.sh --only put,get --keep     some workloads; keep the scratch directory
#
# Environment:
#   BORG145        borg 1.4.5 (default /opt/borg145/bin/borg; installed by scripts/setup.sh)
#   BENCH_WORKDIR  scratch directory (default /tmp/borg-gate-bench-<size>); needs ~9 GiB free
#                  for the full run. Fixtures (captured streams, index repositories) are
#                  reused when --keep left them there.
#   BENCH_OUT      where results.md and results.json go (default bench/out)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
borg=${BORG145:-/opt/borg145/bin/borg}

quick=0
keep=0
driver_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; driver_args+=(--quick) ;;
        --keep) keep=1 ;;
        --only) driver_args+=(--only "$2"); shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
size=$([ "$quick" -eq 1 ] && echo quick || echo full)
workdir=${BENCH_WORKDIR:-/tmp/borg-gate-bench-$size}
out=${BENCH_OUT:-$here/out}

log() { printf '==> bench: %s\n' "$*" >&2; }

# 1. borg 1.4.5: located, or installed the way the test setup does it.
if [ "$("$borg" --version 2>/dev/null || true)" != "borg 1.4.5" ]; then
    log "borg 1.4.5 not found at $borg; installing it with scripts/setup.sh"
    "$root/scripts/setup.sh"
fi
python=$(dirname "$borg")/python
"$python" -c 'import borg, msgpack; assert borg.__version__ == "1.4.5", borg.__version__'

# 2. The release binary, and the checksum probe (its own small cargo project).
log "cargo build --release"
cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2
cargo build --release --locked --manifest-path "$here/tools/Cargo.toml" >&2

# 3. Room on the disk.
need_kib=$([ "$quick" -eq 1 ] && echo $((1024 * 1024)) || echo $((9 * 1024 * 1024)))
mkdir -p "$workdir"
avail_kib=$(df -Pk "$workdir" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt "$need_kib" ]; then
    echo "run.sh: $workdir has $((avail_kib / 1024)) MiB free; the $size run needs $((need_kib / 1024)) MiB" >&2
    exit 1
fi
log "df -h $workdir: $(df -h "$workdir" | awk 'NR == 2 { print $4 " free of " $2 }')"

cleanup() {
    if [ "$keep" -eq 0 ]; then
        log "removing $workdir"
        rm -rf "$workdir"
    else
        log "kept $workdir ($(du -sh "$workdir" | cut -f1))"
    fi
}
trap cleanup EXIT

# 4. The driver, with borg's own Python (msgpack, borg.repository).
"$python" "$here/driver.py" "${driver_args[@]}" \
    --borg-gate "$root/target/release/borg-gate" \
    --borg "$borg" \
    --checksum-speed "$here/tools/target/release/checksum-speed" \
    --measure "$here/tools/target/release/measure" \
    --workdir "$workdir" \
    --out "$out"
log "results: $out/results.md, $out/results.json"

#!/usr/bin/env bash
# borg-gate's borg 2 engine against Python `borg serve --rest` (borg 2.0.0b23), in one command.
#
#   bench/rest.sh            full sizes (1 GiB store/load, 2000 small stores, 100k listing)
#   bench/rest.sh --quick    smoke-test sizes
#
# Environment:
#   BORG2          borg 2.0.0b23 (default /opt/borg2b23/bin/borg; installed by scripts/setup.sh)
#   BENCH_WORKDIR  scratch directory (default /tmp); needs ~3 GiB free for the full run
#   BENCH_OUT      where rest-results.md and rest-results.json go (default bench/out)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
borg2=${BORG2:-/opt/borg2b23/bin/borg}
sizes=()
case "${1:-}" in
    --quick) sizes=(--rounds 1 --store-mib 64 --small 200 --list-objects 10000) ;;
    "") ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "rest.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

if [ "$("$borg2" --version 2>/dev/null || true)" != "borg 2.0.0b23" ]; then
    echo "==> bench: borg 2.0.0b23 not found at $borg2; running scripts/setup.sh" >&2
    "$root/scripts/setup.sh"
fi
cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2
cargo build --release --locked --manifest-path "$here/tools/Cargo.toml" >&2

exec "$(dirname "$borg2")/python" "$here/rest_driver.py" \
    --engine "$root/target/release/borg-gate" \
    --borg2 "$borg2" \
    --meter "$here/tools/target/release/measure" \
    --workdir "${BENCH_WORKDIR:-/tmp}" \
    --out "${BENCH_OUT:-$here/out}" \
    "${sizes[@]}"

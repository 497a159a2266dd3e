#!/usr/bin/env bash
# A real `borg create` of 1 GiB of incompressible data (compression none) through Python
# `borg serve` and through `borg-gate serve`, alternating, with the server process's CPU
# seconds and peak RSS for each. The client is borg 1.4.5; the server runs under
# bench/tools' `measure` (wall, user+sys CPU, peak RSS of exactly that process).
#
#   bench/create-side-by-side.sh [ROUNDS]      (default 3; about 30 s per create)
#
# Environment: BORG145 (default /opt/borg145/bin/borg), BENCH_WORKDIR (default
# /tmp/borg-gate-create-side-by-side, removed at the end; needs ~3.5 GiB free).
set -euo pipefail

rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
borg=${BORG145:-/opt/borg145/bin/borg}
work=${BENCH_WORKDIR:-/tmp/borg-gate-create-side-by-side}

log() { echo "==> create-side-by-side: $*" >&2; }

[ "$("$borg" --version 2>/dev/null || true)" = "borg 1.4.5" ] ||
    { echo "create-side-by-side: $borg is not borg 1.4.5 (run scripts/setup.sh)" >&2; exit 1; }
cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2
cargo build --release --locked --manifest-path "$here/tools/Cargo.toml" >&2
gate=$root/target/release/borg-gate
measure=$here/tools/target/release/measure

rm -rf "$work"
mkdir -p "$work/data" "$work/repos" "$work/reports" "$work/base"
trap 'rm -rf "$work"' EXIT
log "1 GiB of random data in 16 files"
for n in $(seq -w 1 16); do
    head -c $((64 << 20)) /dev/urandom > "$work/data/file$n"
done

# BORG_RSH scripts play sshd: the first word is the host, the rest is the remote command.
cat > "$work/rsh-borg" <<EOF
#!/bin/sh
shift
exec "$measure" "\$BENCH_REPORT" "$borg" serve --restrict-to-path "$work/repos" --umask=077
EOF
cat > "$work/rsh-borg-gate" <<EOF
#!/bin/sh
shift
SSH_ORIGINAL_COMMAND="\$*" exec "$measure" "\$BENCH_REPORT" "$gate" serve --restrict-to-path "$work/repos" --umask=077
EOF
chmod +x "$work/rsh-borg" "$work/rsh-borg-gate"

export BORG_BASE_DIR=$work/base BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
    BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_REMOTE_PATH=borg
printf '| round | server | server CPU s | server wall s | server peak RSS MiB | client wall s |\n'
printf '|---|---|---|---|---|---|\n'
for round in $(seq 1 "$rounds"); do
    for server in borg-gate borg; do
        repo=$work/repos/$server-$round
        export BORG_RSH=$work/rsh-$server
        BENCH_REPORT=$work/reports/init.json "$borg" init --encryption none "ssh://bench$repo"
        report=$work/reports/$server-$round.json
        started=$(date +%s.%N)
        (cd "$work/data" && BENCH_REPORT=$report "$borg" create --compression none \
            "ssh://bench$repo::a" .)
        ended=$(date +%s.%N)
        python3 - "$report" "$round" "$server" "$started" "$ended" <<'PY'
import json, sys
report, round_, server, started, ended = sys.argv[1:]
r = json.load(open(report))
print(f"| {round_} | {server} | {r['user'] + r['sys']:.2f} | {r['wall']:.2f} | "
      f"{r['maxrss_kib'] / 1024:.1f} | {float(ended) - float(started):.2f} |")
PY
        rm -rf "$repo"
    done
done

#!/usr/bin/env bash
# `borg-gate status` over 10,000 real borg repositories: copies of four repositories made by
# real borg (1.4.5 and Debian's 1.2.4), laid out as a hosting server would
# (<root>/customer-NNN/host-MM), timed with medians. For scale, the same run times `du -s`
# of the tree (a floor: it stats every file too) and, on a sample of repositories, what a
# cron script does without borg-gate: `borg list --last 1` per repository.
#
#   bench/status-10k.sh [COUNT]      (default 10000; COUNT must be a multiple of 20)
#
# Environment:
#   BORG145        borg 1.4.5 (default /opt/borg145/bin/borg; scripts/setup.sh installs it)
#   BORG12         Debian's borg (default /usr/bin/borg)
#   RUNS           timed runs of each command (default 7)
#   BORG_SAMPLE    repositories timed with `borg list --last 1` (default 10)
#   BENCH_WORKDIR  scratch directory (default /tmp/borg-gate-status-bench, removed at the
#                  end; needs about 1.5 GiB for 10,000 repositories)
#   COLD=1         also time every command with a cold cache (root only): the tree then lives
#                  on its own ext4 in a loop device with direct I/O, unmounted and mounted
#                  again before each run, which empties that file system's caches (data,
#                  inodes, directories) without touching anybody else's
set -euo pipefail

count=${1:-10000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
borg14=${BORG145:-/opt/borg145/bin/borg}
borg12=${BORG12:-/usr/bin/borg}
runs=${RUNS:-7}
sample=${BORG_SAMPLE:-10}
work=${BENCH_WORKDIR:-/tmp/borg-gate-status-bench}
cold=${COLD:-0}
hosts=20

log() { echo "==> status-10k: $*" >&2; }
die() { echo "status-10k: $*" >&2; exit 1; }

[ $((count % hosts)) -eq 0 ] || die "COUNT must be a multiple of $hosts"
[ "$("$borg14" --version 2>/dev/null || true)" = "borg 1.4.5" ] ||
    die "$borg14 is not borg 1.4.5 (run scripts/setup.sh)"
"$borg12" --version >/dev/null 2>&1 || die "$borg12 does not run"
python=$(dirname "$borg14")/python
if [ "$cold" = 1 ] && [ "$(id -u)" != 0 ]; then die "COLD=1 needs root (mount)"; fi

cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2
cargo build --release --locked --manifest-path "$here/tools/Cargo.toml" >&2
gate=$root/target/release/borg-gate
measure=$here/tools/target/release/measure

loop=
cleanup() {
    if [ -n "$loop" ]; then
        umount "$work/srv" 2>/dev/null || true
        losetup -d "$loop" 2>/dev/null || true
    fi
    rm -rf "$work"
}
rm -rf "$work"
mkdir -p "$work/templates" "$work/source" "$work/base" "$work/reports" "$work/srv"
trap cleanup EXIT
if [ "$cold" = 1 ]; then
    truncate -s $((count * 300 + 512 * 1024))K "$work/fs.img"
    mkfs.ext4 -q -N $((count * 40 + 10000)) "$work/fs.img"
    loop=$(losetup --direct-io=on --find --show "$work/fs.img")
    mount "$loop" "$work/srv"
fi
export BORG_BASE_DIR=$work/base BORG_PASSPHRASE=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes \
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes LANG=C.UTF-8

# 1. Four small repositories made by real borg, each a different shape.
log "making 4 template repositories with borg 1.4.5 and $("$borg12" --version)"
cp /etc/services "$work/source/"
head -c 20000 /dev/urandom > "$work/source/random.bin"
t=$work/templates
(
    cd "$work/source"
    "$borg14" init -e repokey "$t/plain-14" >/dev/null 2>&1
    "$borg14" create "$t/plain-14::a" .
    "$borg12" init -e repokey "$t/plain-12" >/dev/null 2>&1
    "$borg12" create "$t/plain-12::a" .
    "$borg14" init -e repokey --append-only --storage-quota 1G "$t/append-only" >/dev/null 2>&1
    "$borg14" create "$t/append-only::a" .
    head -c 50000 /dev/urandom > random2.bin
    "$borg14" create "$t/append-only::b" .
    "$borg14" delete "$t/append-only::a"
    "$borg14" init -e none "$t/pruned" >/dev/null 2>&1
    for n in 1 2 3; do
        head -c 30000 /dev/urandom > "round$n.bin"
        "$borg14" create "$t/pruned::r$n" .
    done
    "$borg14" prune --keep-last 1 "$t/pruned"
    "$borg14" compact "$t/pruned"
)
templates=(plain-14 plain-12 append-only pruned)

# 2. COUNT copies: one customer's hosts from the templates, then copies of that customer.
log "copying them into $count repositories ($((count / hosts)) customers x $hosts hosts)"
first=$work/srv/customer-000
mkdir -p "$first"
for m in $(seq 0 $((hosts - 1))); do
    cp -a "$t/${templates[$((m % 4))]}" "$first/host-$(printf %02d "$m")"
done
for c in $(seq 1 $((count / hosts - 1))); do
    cp -a "$first" "$work/srv/customer-$(printf %03d "$c")"
done
log "tree: $(du -sh "$work/srv" | cut -f1)"

# 3. Validation (untimed, also warms the cache): every repository found, committed, clean.
"$gate" status --json "$work/srv" > "$work/status.jsonl"
"$python" - "$work/status.jsonl" "$count" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == int(sys.argv[2]), f"{len(rows)} repositories reported"
assert all(r["last_commit"] and not r["problems"] and r["segments"] > 0 for r in rows)
assert sum(r["append_only"] for r in rows) == len(rows) // 4
EOF

# 4. Timed runs, alternating the commands; with COLD=1, each also after a remount.
run() { # name, command...
    local name=$1
    shift
    "$measure" "$work/reports/$name.$round.json" "$@" > /dev/null
    if [ "$cold" = 1 ]; then
        umount "$work/srv" && mount "$loop" "$work/srv"
        "$measure" "$work/reports/cold-$name.$round.json" "$@" > /dev/null
    fi
}
log "timing $runs runs of each command$([ "$cold" = 1 ] && echo ', warm and cold')"
for round in $(seq 1 "$runs"); do
    run text "$gate" status "$work/srv"
    run json "$gate" status --json "$work/srv"
    run textfile "$gate" status -q --max-age 26h --textfile "$work/status.prom" "$work/srv"
    run du du -s "$work/srv"
done
[ "$(grep -c '^borg_gate_repository_size_bytes{' "$work/status.prom")" = "$count" ] ||
    die "the textfile does not have $count size series"

# 5. The way without borg-gate, on a sample: `borg list --last 1` per repository.
log "timing borg list --last 1 on $sample repositories"
round=0
for repo in $(ls -d "$work"/srv/customer-00*/host-* | head -n "$sample"); do
    round=$((round + 1))
    run borg-list "$borg14" list --last 1 --format '{time}{NL}' "$repo"
done

"$python" - "$work/reports" "$count" "$runs" "$sample" "$cold" <<'EOF'
import glob, json, os, statistics, sys
reports, count, runs, sample, cold = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"
def load(name):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(reports, name + ".*.json")))]
def span(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"
sec = lambda v: f"{v:.2f} s"
ms = lambda v: f"{v * 1000:.0f} ms"
mib = lambda v: f"{v / 1024:.1f} MiB"
print(f"| {count:,} repositories, median (min–max) of {runs} | wall | CPU (user+sys) | peak RSS |")
print("|---|---|---|---|")
for prefix, cache in [("", "warm cache"), ("cold-", "cold cache")] if cold else [("", "warm cache")]:
    for name, label in [("text", "`borg-gate status ROOT`"),
                        ("json", "`borg-gate status --json ROOT`"),
                        ("textfile", "`borg-gate status -q --max-age 26h --textfile F ROOT`"),
                        ("du", "`du -s ROOT` (floor: stats every file too)")]:
        rows = load(prefix + name)
        assert all(r["status"] == 0 for r in rows), (name, rows)
        print(f"| {label}, {cache} | {span([r['wall'] for r in rows], sec)} | "
              f"{span([r['user'] + r['sys'] for r in rows], sec)} | {span([r['maxrss_kib'] for r in rows], mib)} |")
rows = load("borg-list")
assert all(r["status"] == 0 for r in rows), rows
per = statistics.median(r["wall"] for r in rows)
text = load("text")
status_per = statistics.median(r["wall"] for r in text) / count
print(f"| `borg list --last 1 REPO`, per repository ({sample} sampled) | {span([r['wall'] for r in rows], ms)} | "
      f"{span([r['user'] + r['sys'] for r in rows], ms)} | {span([r['maxrss_kib'] for r in rows], mib)} |")
print()
print(f"Per repository: borg-gate status {status_per * 1e6:.0f} µs, borg list --last 1 {per * 1000:.0f} ms "
      f"(ratio 1/{per / status_per:,.0f}); {count:,} repositories one borg list at a time: {per * count / 3600:.1f} h.")
EOF

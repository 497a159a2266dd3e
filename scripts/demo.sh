#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is needed, build borg-gate,
# start a real sshd on loopback whose authorized_keys runs borg-gate as a forced command,
# and back up, list, restore and verify with a real borg client through it.
#
#   ./scripts/demo.sh                      # built-in engine, Debian's borg 1.2 client
#   BORG=/opt/borg145/bin/borg ./scripts/demo.sh
#   ENGINE=/usr/bin/borg ./scripts/demo.sh  # front Python `borg serve` instead
#
# As root, or as a user with sudo (scripts/setup.sh installs with it; the demo's sshd then
# runs as that user and only lets that user in). SKIP_SETUP=1 skips the installation.
# Needs Rust 1.85 or newer on the PATH (rustup); it ends with what an operator sees the next
# morning: `borg-gate status` of the repository and `borg-gate audit` of the sessions.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v cargo >/dev/null 2>&1; then
    echo "demo.sh: cargo is not on the PATH; install Rust 1.85 or newer (https://rustup.rs) first" >&2
    exit 1
fi
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh

cargo build --release --quiet
gate="$root/target/release/borg-gate"
borg=${BORG:-/usr/bin/borg}
engine=${ENGINE:-builtin}

work=$(mktemp -d /tmp/borg-gate-demo.XXXXXX)
chmod 755 "$work"
cleanup() {
    [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "policy $work/etc/alice.toml"
mkdir -p "$work/etc" "$work/srv/alice" "$work/log" "$work/src" "$work/restore"
cat > "$work/etc/alice.toml" <<EOF
version = 1
name = "alice-demo"
[engine]
program = "$engine"
[client]
programs = ["borg"]
allow_probe = true
log_levels = ["warning", "info"]
lock_wait = { default = 1, max = 600 }
[repository]
restrict_to_paths = ["$work/srv/alice"]
umask = "077"
[audit]
file = "$work/log/audit.jsonl"
EOF
chmod 600 "$work/etc/alice.toml"
"$gate" check-policy "$work/etc/alice.toml"

say "sshd on 127.0.0.1 with a forced command"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
echo "command=\"$gate --policy $work/etc/alice.toml\",restrict $(cat "$work/client_key.pub")" > "$work/authorized_keys"
cat "$work/authorized_keys" | cut -c1-160
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
EOF
# sshd's privilege separation directory (scripts/setup.sh makes it; needed only as root).
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
done

export BORG_RSH="ssh -F /dev/null -i $work/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
export BORG_PASSPHRASE=demo-passphrase BORG_BASE_DIR="$work/borg-base"
repo="ssh://$(id -un)@127.0.0.1:$port$work/srv/alice/repo"

say "sample data"
head -c 3000000 /dev/urandom > "$work/src/random.bin"
seq 1 100000 > "$work/src/numbers.txt"
mkdir -p "$work/src/nested/dir" && echo hello > "$work/src/nested/dir/hello.txt"

say "$("$borg" --version) through borg-gate ($engine engine)"
"$borg" init --encryption=repokey "$repo"
( cd "$work" && "$borg" create --stats "$repo::first" src )
"$borg" list "$repo"
( cd "$work/restore" && "$borg" extract "$repo::first" )
diff -r "$work/src" "$work/restore/src" && echo "restored tree is identical"

say "what a refused client sees"
ssh -F /dev/null -i "$work/client_key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o LogLevel=ERROR "$(id -un)@127.0.0.1" 'sh -c id' || true
"$borg" list "ssh://$(id -un)@127.0.0.1:$port/etc" || true

say "audit log"
cat "$work/log/audit.jsonl"

say "the next morning: borg-gate status and borg-gate audit"
"$gate" status --max-age 26h --policy "$work/etc/alice.toml"
"$gate" audit "$work/log/audit.jsonl"

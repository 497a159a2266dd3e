#!/usr/bin/env bash
# The Debian package as an administrator uses it, on this machine (run as root; CI is):
# dpkg -i, the installed binary and man pages, `borg-gate keys add` provisioning a client
# for a new account, a real backup with borg through a real sshd with that key, then
# dpkg -r and dpkg --purge leaving nothing behind but the audit log.
#
#   bash scripts/package.sh && bash scripts/test-package.sh
#
# The package must not be installed already (outside CI the test then skips, so that it
# never replaces an administrator's copy). One run at a time per machine (flock).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ci=false
case "${CI:-}" in [Tt][Rr][Uu][Ee] | 1) ci=true ;; esac
checks=0
ok() { checks=$((checks + 1)); printf 'ok: %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
unavailable() {
    if [ "$ci" = true ]; then fail "$*, and CI=true makes that a failure"; fi
    printf 'skipping the package test: %s\n' "$*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || unavailable "not running as root (dpkg -i, useradd and sshd need root)"
for tool in dpkg man ssh-keygen /usr/sbin/sshd /usr/bin/borg /usr/sbin/logrotate flock; do
    command -v "$tool" >/dev/null 2>&1 || unavailable "$tool is not installed (scripts/setup.sh installs it)"
done
shopt -s nullglob
debs=(target/debian/borg-gate_*.deb)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || fail "expected one target/debian/borg-gate_*.deb (run scripts/package.sh), found ${#debs[@]}"
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)

exec 9>/run/lock/borg-gate-package-test.lock
flock 9
if dpkg-query -W -f='${db:Status-Status}' borg-gate 2>/dev/null | grep -qx installed; then
    [ "$ci" = true ] || unavailable "the borg-gate package is installed on this machine; the test would replace and purge it"
    dpkg --purge borg-gate >/dev/null
fi
audit=/var/log/borg-gate/audit.jsonl
[ ! -e "$audit" ] || fail "$audit exists already (a previous run's?); remove it first"

work=$(mktemp -d /tmp/borg-gate-package-test.XXXXXX)
chmod 755 "$work"
account=bgpkg$$
sshd_pid=
cleanup() {
    [ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null || true
    if dpkg-query -W borg-gate >/dev/null 2>&1; then dpkg --purge borg-gate >/dev/null 2>&1 || true; fi
    if getent passwd "$account" >/dev/null; then userdel --remove "$account" 2>/dev/null || true; fi
    rm -f "$audit"
    rmdir /var/log/borg-gate 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. Install, and what it installed.
dpkg -i "$deb" >/dev/null
ok "dpkg -i $deb"
[ "$(command -v borg-gate)" = /usr/bin/borg-gate ] || fail "borg-gate on PATH is $(command -v borg-gate)"
[ "$(/usr/bin/borg-gate --version)" = "borg-gate ${version%-*}" ] || fail "/usr/bin/borg-gate --version says $(/usr/bin/borg-gate --version)"
ok "/usr/bin/borg-gate --version: borg-gate ${version%-*}"
[ "$(man -w borg-gate)" = /usr/share/man/man1/borg-gate.1.gz ] || fail "man -w borg-gate: $(man -w borg-gate 2>&1)"
[ "$(man -w 5 borg-gate-policy)" = /usr/share/man/man5/borg-gate-policy.5.gz ] || fail "man -w 5 borg-gate-policy"
ok "man -w finds borg-gate(1) and borg-gate-policy(5)"
for file in /usr/share/bash-completion/completions/borg-gate /usr/share/zsh/vendor-completions/_borg-gate \
    /usr/share/fish/vendor_completions.d/borg-gate.fish /etc/logrotate.d/borg-gate \
    /usr/share/doc/borg-gate/copyright /usr/share/doc/borg-gate/README.md; do
    [ -s "$file" ] || fail "$file is missing"
done
for example in policy-examples/*.toml; do
    cmp -s "$example" "/usr/share/doc/borg-gate/$example" || fail "/usr/share/doc/borg-gate/$example differs"
done
shopt -s nullglob
for rules in contrib/*.rules.yml contrib/*.rules.yaml contrib/*/*.rules.yml contrib/*/*.rules.yaml; do
    cmp -s "$rules" "/usr/share/doc/borg-gate/alert-rules/$(basename "$rules")" || fail "alert rules $rules are not in the package"
done
shopt -u nullglob
ok "completions, logrotate snippet, policy examples and alert rules are in place"
for dir in /etc/borg-gate/keys /var/log/borg-gate; do
    [ "$(stat -c '%U:%G %a' "$dir")" = "root:root 755" ] || fail "$dir is $(stat -c '%U:%G %a' "$dir")"
done
ok "/etc/borg-gate/keys and /var/log/borg-gate are root 0755"
bash -n /usr/share/bash-completion/completions/borg-gate || fail "bash cannot read its completion script"
logrotate --debug --state "$work/logrotate.state" /etc/logrotate.d/borg-gate >"$work/logrotate.out" 2>&1 \
    || fail "logrotate refuses the snippet: $(cat "$work/logrotate.out")"
ok "bash reads the completions; logrotate reads the snippet"
installed_files=$(dpkg -L borg-gate)

# 2. A client key, provisioned for a new account with the package's defaults.
ssh-keygen -q -t ed25519 -N '' -C client@laptop -f "$work/client_key"
borg-gate keys add --create-user --user "$account" --name laptop --key "$work/client_key.pub" \
    --path "$work/srv/laptop" >"$work/keys-add.out" || fail "keys add: $(cat "$work/keys-add.out")"
home=$(getent passwd "$account" | cut -d: -f6)
grep -q "borg-gate:laptop client@laptop\$" "$home/.ssh/authorized_keys" || fail "no line for laptop in $home/.ssh/authorized_keys"
[ "$(stat -c '%U %a' /etc/borg-gate/keys/laptop.toml "$work/srv" "$work/srv/laptop" "$audit" | tr '\n' ' ')" = \
  "root 644 root 755 $account 700 $account 640 " ] || fail "owners and modes: $(stat -c '%n %U %a' /etc/borg-gate/keys/laptop.toml "$work/srv" "$work/srv/laptop" "$audit")"
ok "keys add --create-user wrote the policy, the directory, the audit log and the line"

# 3. A real sshd on loopback with stock settings for the account's ~/.ssh/authorized_keys.
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/sshd_config" <<CONFIG
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
PidFile $work/sshd.pid
StrictModes yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
KexAlgorithms curve25519-sha256
ClientAliveInterval 10
ClientAliveCountMax 30
CONFIG
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$work/sshd_config" -E "$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 200); do
    grep -q "Server listening on 127.0.0.1 port $port" "$work/sshd.log" 2>/dev/null && break
    kill -0 "$sshd_pid" 2>/dev/null || fail "sshd exited: $(cat "$work/sshd.log")"
    sleep 0.1
done
grep -q "Server listening" "$work/sshd.log" || fail "sshd does not listen: $(cat "$work/sshd.log")"

# 4. The client backs up through it.
export BORG_RSH="ssh -F /dev/null -i $work/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
export BORG_PASSPHRASE=package-test BORG_BASE_DIR="$work/borg-base" HOME="$work/borg-base"
repository="ssh://$account@127.0.0.1:$port$work/srv/laptop/repo"
mkdir -p "$work/data"
seq 1 20000 >"$work/data/numbers.txt"
borg_run() { "$@" >"$work/borg.out" 2>&1 || fail "$*: $(cat "$work/borg.out"; tail -20 "$work/sshd.log")"; }
borg_run /usr/bin/borg init --encryption=repokey "$repository"
borg_run bash -c "cd '$work' && /usr/bin/borg create '$repository::first' data"
borg_run /usr/bin/borg list --short "$repository"
[ "$(cat "$work/borg.out")" = first ] || fail "borg list: $(cat "$work/borg.out")"
ok "borg init, create and list through sshd and the installed borg-gate"
grep -q '"decision":"accept"' "$audit" || fail "no accepted session in $audit"
grep -q -- '"--append-only"' "$audit" || fail "the sessions did not run append-only: $(cat "$audit")"
borg-gate keys list --user "$account" >"$work/list.out"
grep -q "^1 \+laptop \+append-only \+- \+20[0-9-]*T" "$work/list.out" || fail "keys list: $(cat "$work/list.out")"
borg-gate doctor --user "$account" --sshd-config "$work/sshd_config" >"$work/doctor.out" 2>&1 \
    || fail "doctor is not clean: $(cat "$work/doctor.out")"
ok "the audit log has the sessions, keys list the last one, doctor is clean"

# 5. Remove the key, then the package: nothing is left but the audit log.
borg-gate keys remove laptop --user "$account" --purge >/dev/null
[ ! -e /etc/borg-gate/keys/laptop.toml ] || fail "keys remove --purge left the policy"
kill "$sshd_pid"
wait "$sshd_pid" 2>/dev/null || true
sshd_pid=
dpkg -r borg-gate >/dev/null
[ ! -e /usr/bin/borg-gate ] || fail "dpkg -r left /usr/bin/borg-gate"
dpkg --purge borg-gate >/dev/null
left=()
while IFS= read -r path; do
    case "$path" in /var/log/borg-gate) continue ;; esac
    if [ -e "$path" ] && ! { [ -d "$path" ] && [ -n "$(dpkg -S "$path" 2>/dev/null)" ]; }; then
        left+=("$path")
    fi
done <<<"$installed_files
/etc/borg-gate
/etc/borg-gate/keys"
[ ${#left[@]} -eq 0 ] || fail "dpkg --purge left ${left[*]}"
strays=$(find /etc /usr/bin /usr/share /var/lib/dpkg/info /var/log -name '*borg-gate*' \
    ! -path /var/log/borg-gate ! -path "$audit" 2>/dev/null || true)
[ -z "$strays" ] || fail "files left behind: $strays"
[ "$(ls -A /var/log/borg-gate)" = audit.jsonl ] || fail "/var/log/borg-gate holds $(ls -A /var/log/borg-gate)"
ok "dpkg -r and dpkg --purge leave nothing but the audit log"
printf 'package: %d passed, 0 failed\n' "$checks"

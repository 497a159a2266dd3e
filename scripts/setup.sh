#!/usr/bin/env bash
# Installs what the tests need on Debian 12, idempotently: Debian's borg (1.2) and OpenSSH,
# borg 1.4.5 and borg 2.0.0b23 from PyPI in venvs of their own (built from source when no
# wheel fits, hence the -dev packages), sshd's privilege separation directory, logrotate (the
# package test reads our snippet with it), promtool (checks the alert rules in contrib/) and
# the pinned cargo-deb (scripts/package.sh). Prints the versions at the end.
#
#   BORG14_VENV   where the borg 1.4.5 venv lives (default /opt/borg145)
#   BORG14_PYTHON the python that creates the venvs (default: python3 on PATH)
#   BORG2_VENV    where the borg 2.0.0b23 venv lives (default /opt/borg2b23); b23 is the last
#                 borg 2 beta that builds against Debian 12's OpenSSL 3.0, and its
#                 `borg serve --rest` (borgstore 0.6) is the reference server of the tests
set -euo pipefail

BORG14_VERSION=1.4.5
BORG14_VENV=${BORG14_VENV:-/opt/borg145}
BORG14_PYTHON=${BORG14_PYTHON:-python3}
BORG2_VERSION=2.0.0b23
BORG2_VENV=${BORG2_VENV:-/opt/borg2b23}

log() { printf '==> setup: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "setup.sh: needs root (or sudo) to install packages" >&2
    exit 1
fi

installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

apt_updated=0
apt_install() {
    local missing=() package
    for package in "$@"; do
        installed "$package" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    if [ "$apt_updated" -eq 0 ]; then
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    # Installing openssh-server must not start a system sshd: we start our own on loopback.
    # Docker images already carry such a policy; elsewhere we add one for the duration.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
        "${as_root[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local status=0
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" || status=$?
    if [ "$added_policy" -eq 1 ]; then
        "${as_root[@]}" rm -f "$policy"
    fi
    return "$status"
}

# 1. Debian packages: the real components, plus what a source build of borg 1.4.5 needs.
apt_install borgbackup openssh-server openssh-client man-db groff-base logrotate \
    pkg-config libssl-dev libacl1-dev liblz4-dev libzstd-dev libxxhash-dev
command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev

# 2. A python that can make venvs (pyenv's can; Debian's needs python3-venv and headers).
if ! "$BORG14_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv python3-dev
    BORG14_PYTHON=/usr/bin/python3
fi

# 3. borg 1.4.5 in its own venv, unless it is there already.
borg14_version() {
    "$BORG14_VENV/bin/borg" --version 2>/dev/null || true
}
if [ "$(borg14_version)" != "borg $BORG14_VERSION" ]; then
    if ! "$BORG14_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating venv $BORG14_VENV with $("$BORG14_PYTHON" --version 2>&1)"
        "${as_root[@]}" "$BORG14_PYTHON" -m venv --clear "$BORG14_VENV"
    fi
    log "pip install borgbackup==$BORG14_VERSION into $BORG14_VENV (may build from source)"
    "${as_root[@]}" "$BORG14_VENV/bin/python" -m pip install --quiet --prefer-binary \
        "borgbackup==$BORG14_VERSION"
    if [ "$(borg14_version)" != "borg $BORG14_VERSION" ]; then
        echo "setup.sh: $BORG14_VENV/bin/borg is '$(borg14_version)', not borg $BORG14_VERSION" >&2
        exit 1
    fi
fi

# 4. borg 2.0.0b23 in its own venv, built against Debian's OpenSSL, unless it is there already.
borg2_version() {
    "$BORG2_VENV/bin/borg" --version 2>/dev/null || true
}
if [ "$(borg2_version)" != "borg $BORG2_VERSION" ]; then
    if ! "$BORG2_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating venv $BORG2_VENV with $("$BORG14_PYTHON" --version 2>&1)"
        "${as_root[@]}" "$BORG14_PYTHON" -m venv --clear "$BORG2_VENV"
    fi
    log "pip install borgbackup==$BORG2_VERSION into $BORG2_VENV (builds from source)"
    "${as_root[@]}" env BORG_OPENSSL_PREFIX=/usr "$BORG2_VENV/bin/python" -m pip install \
        --quiet --prefer-binary "borgbackup==$BORG2_VERSION"
    if [ "$(borg2_version)" != "borg $BORG2_VERSION" ]; then
        echo "setup.sh: $BORG2_VENV/bin/borg is '$(borg2_version)', not borg $BORG2_VERSION" >&2
        exit 1
    fi
fi

# 5. sshd refuses to start without its privilege separation directory (/run is a tmpfs).
"${as_root[@]}" mkdir -p /run/sshd
"${as_root[@]}" chmod 0755 /run/sshd

# 6. promtool, which checks and tests contrib/*.rules.yml (tests/alert_rules.rs). Debian's
#    prometheus package has it (19 MB download); only that one binary is taken out of the
#    package, so no Prometheus server is installed, enabled or started.
promtool_version() {
    promtool --version 2>/dev/null | head -n 1 || true
}
if [ -z "$(promtool_version)" ]; then
    log "promtool from Debian's prometheus package (the binary only)"
    promtool_tmp=$(mktemp -d)
    if ! (cd "$promtool_tmp" && apt-get download -qq prometheus 2>/dev/null); then
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "$promtool_tmp" && apt-get download -qq prometheus)
    fi
    dpkg-deb --fsys-tarfile "$promtool_tmp"/prometheus_*.deb |
        tar -x -C "$promtool_tmp" ./usr/bin/promtool
    "${as_root[@]}" install -m 0755 "$promtool_tmp/usr/bin/promtool" /usr/local/bin/promtool
    rm -rf "$promtool_tmp"
fi

# 7. cargo-deb, which builds the Debian package (scripts/package.sh).
bash "$(dirname "${BASH_SOURCE[0]}")/install-cargo-deb.sh"

# 8. What we have.
log "versions"
printf '  %-16s %s\n' \
    "debian borg" "$(/usr/bin/borg --version)" \
    "pypi borg" "$(borg14_version) ($BORG14_VENV/bin/borg)" \
    "pypi borg 2" "$(borg2_version) ($BORG2_VENV/bin/borg)" \
    "openssh" "$(ssh -V 2>&1)" \
    "sshd" "$(dpkg-query -W -f='${Version}' openssh-server)" \
    "python (venv)" "$("$BORG14_VENV/bin/python" --version 2>&1)" \
    "rustc" "$(rustc --version 2>/dev/null || echo 'not found')" \
    "cargo" "$(cargo --version 2>/dev/null || echo 'not found')" \
    "cargo-deb" "$(cargo deb --version 2>/dev/null || echo 'not found')" \
    "promtool" "$(promtool_version) ($(command -v promtool))"

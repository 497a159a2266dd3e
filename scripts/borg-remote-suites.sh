#!/usr/bin/env bash
# Runs borg's own remote test suites (the `Remote*` archiver and repository test classes)
# twice per borg version, once against Python `borg serve` and once with `borg-gate serve`
# in its place, and compares the outcome test by test. Long (tens of minutes); not in CI.
#
#   scripts/borg-remote-suites.sh                # both borg versions
#   SUITES=1.4.5 scripts/borg-remote-suites.sh   # one of them (1.4.5 or 1.2.4)
#   JOBS=2 scripts/borg-remote-suites.sh         # pytest-xdist workers per run
#   SELECT=test_check scripts/borg-remote-suites.sh   # only tests matching this -k expression
#
#   WORK        work directory (default /tmp/borg-remote-suites): venvs, reports, logs
#   ENGINE      the borg-gate to test (default: target/release/borg-gate, built here)
#   BORG14_VENV borg 1.4.5's venv from scripts/setup.sh (default /opt/borg145)
#
# borg 1.4.5's tests come with its installed package (identical to the sdist's
# src/borg/testsuite); Debian's borgbackup package ships 1.2.4's tests but not the conftest.py
# that sets them up, which is taken from the 1.2.4 sdist. pytest goes into a venv of its own
# per version that sees the installed borg; `borg_gate_engine.py`, imported by every python
# of that venv, swaps the server the clients start (in pytest and in the clients tests
# fork). Exit status 1 when a test passes against Python `borg serve` and not against the
# engine.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$root/scripts/borg-remote-suites"
WORK=${WORK:-/tmp/borg-remote-suites}
BORG14_VENV=${BORG14_VENV:-/opt/borg145}
SUITES=${SUITES:-"1.4.5 1.2.4"}
JOBS=${JOBS:-0}
SELECT=${SELECT:-}

log() { printf '==> borg-remote-suites: %s\n' "$*" >&2; }

if [ -z "${ENGINE:-}" ]; then
    log "cargo build --release"
    (cd "$root" && cargo build --release --quiet)
    ENGINE="$root/target/release/borg-gate"
fi
[ -x "$ENGINE" ] || { echo "borg-remote-suites: $ENGINE is not executable" >&2; exit 2; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# make_venv VERSION BASE_PYTHON PYTEST_SPEC [SITE_PACKAGES [MORE_PACKAGES...]]: a venv with
# pytest that sees the installed borg (through SITE_PACKAGES, else the system's).
make_venv() {
    local venv="$WORK/venv-$1" python=$2 spec=$3 site=${4:-}
    shift 4 2>/dev/null || shift $#
    if [ ! -x "$venv/bin/python" ]; then
        log "venv $venv"
        if [ -n "$site" ]; then
            "$python" -m venv "$venv"
            local pth
            pth=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
            echo "$site" > "$pth/borg-under-test.pth"
        else
            "$python" -m venv --system-site-packages "$venv"
        fi
        "$venv/bin/python" -m pip install --quiet "$spec" pytest-xdist "$@"
    fi
    local purelib
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\nimport borg_gate_engine\n' "$here" > "$purelib/borg-gate-engine.pth"
    echo "$venv"
}

# run VERSION VENV PLUGINS... : both runs and the comparison; appends to $status.
status=0
run_suite() {
    local version=$1 venv=$2
    shift 2
    local plugins=("$@") selection
    selection="RemoteArchiverTestCase or RemoteRepositoryTestCase or RemoteLegacyFree or RemoteRepositoryCheckTestCase"
    [ -n "$SELECT" ] && selection="($selection) and ($SELECT)"
    local parallel=()
    [ "$JOBS" -gt 0 ] && parallel=(-n "$JOBS")
    for server in python engine; do
        local report="$WORK/$version-$server.xml" logfile="$WORK/$version-$server.log"
        local engine_env=()
        [ "$server" = engine ] && engine_env=(GATE_SUITE_ENGINE="$ENGINE")
        local starts="$WORK/$version-$server.starts"
        rm -f "$starts"
        log "borg $version against $server serve (log: $logfile)"
        rm -rf "$WORK/tmp-$version-$server"
        mkdir -p "$WORK/run"
        # Tests also run `python3 -m borg.archiver` from PATH: the venv's python comes first.
        (cd "$WORK/run" && env "${engine_env[@]}" GATE_SUITE_STARTS="$starts" \
            PATH="$venv/bin:$PATH" PYTHONPATH="$WORK/plugins" \
            "$venv/bin/python" -m pytest -p no:cacheprovider "${plugins[@]}" \
            "${parallel[@]}" --basetemp="$WORK/tmp-$version-$server" -q -rfE \
            --junitxml="$report" -k "$selection" \
            --pyargs borg.testsuite.archiver borg.testsuite.repository) >"$logfile" 2>&1 || true
        touch "$starts"
        printf '%s; servers started: %s (borg-gate: %s)\n' "$(tail -n 1 "$logfile")" \
            "$(wc -l <"$starts")" "$(grep -c "^$ENGINE serve" "$starts" || true)"
    done
    "$venv/bin/python" "$here/compare.py" "borg $version" \
        "$WORK/$version-python.xml" "$WORK/$version-engine.xml" || status=1
}

mkdir -p "$WORK/plugins"
for version in $SUITES; do
    case $version in
    1.4.5)
        site=$("$BORG14_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        base=$("$BORG14_VENV/bin/python" -c 'import sys; print(sys._base_executable)')
        venv=$(make_venv 1.4.5 "$base" "pytest" "$site")
        run_suite 1.4.5 "$venv"
        ;;
    1.2.4)
        if [ ! -f "$WORK/plugins/borg124_conftest.py" ]; then
            log "pip download borgbackup==1.2.4 (for its conftest.py)"
            rm -rf "$WORK/sdist-1.2.4"
            python3 -m pip download --quiet --no-deps --no-binary :all: \
                --dest "$WORK/sdist-1.2.4" borgbackup==1.2.4
            tar -xzf "$WORK/sdist-1.2.4/borgbackup-1.2.4.tar.gz" -O borgbackup-1.2.4/conftest.py \
                > "$WORK/plugins/borg124_conftest.py"
        fi
        # 1.2.4's conftest uses pytest_report_header(startdir), which pytest 8 removed.
        venv=$(make_venv 1.2.4 /usr/bin/python3 "pytest<8" "" python-dateutil)
        run_suite 1.2.4 "$venv" -p borg124_conftest
        ;;
    *)
        echo "borg-remote-suites: unknown suite $version (1.4.5 or 1.2.4)" >&2
        exit 2
        ;;
    esac
done
exit "$status"

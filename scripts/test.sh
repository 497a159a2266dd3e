#!/usr/bin/env bash
# The whole check, as CI runs it: setup (unless SKIP_SETUP=1), format, lints, tests, doc tests,
# then the Debian package: built (scripts/package.sh) and installed, used and purged
# (scripts/test-package.sh). Ends with one "tests: N passed, N failed, N skipped" line summing
# every cargo test run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export BORG14_VENV=${BORG14_VENV:-/opt/borg145}
export BORG14=${BORG14:-$BORG14_VENV/bin/borg}
export RUST_BACKTRACE=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT

step() {
    local started=$SECONDS
    printf '\n==> %s\n' "$*"
    "$@"
    printf '<== %s: ok (%ds)\n' "$*" $((SECONDS - started))
}

# Runs cargo test, keeping its output for the summary below.
cargo_test() {
    cargo test "$@" 2>&1 | tee -a "$test_log"
}

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    step bash scripts/setup.sh
fi
step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step cargo_test --all-targets --no-fail-fast
step cargo_test --doc
step bash scripts/package.sh
step bash scripts/test-package.sh

# libtest prints one "test result:" line per test binary; add them up.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) passed += $i
            if ($(i + 1) ~ /^failed/) failed += $i
            if ($(i + 1) ~ /^ignored/) ignored += $i
        }
    }
    END { printf "\ntests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$test_log"

#!/usr/bin/env bash
# Builds the Debian package into target/debian/borg-gate_<version>-1_<arch>.deb: a release
# build, the shell completions the binary generates (clap_complete), the documentation tree
# (README, policy examples, and alert rules from contrib/ when there are any), then cargo-deb
# with the metadata in Cargo.toml. Installs the pinned cargo-deb first if it is missing.
# Works as root or not; prints the package's path last.
#
#   ./scripts/package.sh
#   apt install ./target/debian/borg-gate_*.deb
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-cargo-deb.sh

assets=target/package-assets
rm -rf "$assets"
rm -f target/debian/borg-gate_*.deb
cargo build --release --locked
binary="${CARGO_TARGET_DIR:-target}/release/borg-gate"

mkdir -p "$assets/completions" "$assets/doc/policy-examples"
"$binary" completions bash > "$assets/completions/borg-gate"
"$binary" completions zsh > "$assets/completions/_borg-gate"
"$binary" completions fish > "$assets/completions/borg-gate.fish"

cp README.md "$assets/doc/"
cp policy-examples/*.toml "$assets/doc/policy-examples/"
# Prometheus alert rules, wherever in contrib/ they are kept.
shopt -s nullglob
rules=(contrib/*.rules.yml contrib/*.rules.yaml contrib/*/*.rules.yml contrib/*/*.rules.yaml)
shopt -u nullglob
if [ ${#rules[@]} -gt 0 ]; then
    mkdir -p "$assets/doc/alert-rules"
    cp "${rules[@]}" "$assets/doc/alert-rules/"
fi

# Stripped: the release profile keeps line tables for benchmarks, which users do not need.
cargo deb --no-build --locked --quiet --strip

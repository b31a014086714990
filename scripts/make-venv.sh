#!/usr/bin/env bash
# Creates the Python venv VENV (unless it is there) and installs REQUIREMENTS
# into it. `make venv` runs this.
#
# Usage: scripts/make-venv.sh VENV REQUIREMENTS
set -euo pipefail

usage="usage: $0 VENV REQUIREMENTS"
venv=${1:?$usage}
requirements=${2:?$usage}
python=${PYTHON:-python3}

create() {
    rm -rf "$venv"
    "$python" -m venv "$venv"
}

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "make-venv: creating $venv with $("$python" --version 2>&1)"
    if ! create; then
        # Debian's own python3 needs the python3-venv package for this.
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "make-venv: '$python -m venv' failed; installing Debian's python3-venv and retrying"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            create
        else
            echo "make-venv: '$python -m venv' failed; on Debian, install python3-venv" >&2
            exit 1
        fi
    fi
fi

"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
echo "make-venv: $venv is ready ($requirements installed)"

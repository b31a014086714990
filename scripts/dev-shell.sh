#!/usr/bin/env bash
# Starts an interactive shell for working on allocate: .venv activated and
# .tools/bin on PATH. `make shell` builds both first, then runs this.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
tools_bin="$root/.tools/bin"

if [[ ! -f $venv/bin/activate ]]; then
    echo "dev-shell: $venv is missing: run 'make shell' (or 'make venv') instead" >&2
    exit 1
fi

# A `make` typed in the shell is a top-level make, not a sub-make of `make shell`.
unset MAKELEVEL MAKEFLAGS MFLAGS

banner="allocate dev shell: venv $venv, tools $tools_bin; 'exit' leaves it"
user_shell=${SHELL:-bash}

if [[ $(basename "$user_shell") == bash ]]; then
    # An rc file that reads the user's own ~/.bashrc first, so that whatever it
    # puts on PATH (pyenv shims, say) comes after the venv and the tools.
    rcfile=$(mktemp)
    cat >"$rcfile" <<RC
if [ -f "\$HOME/.bashrc" ]; then . "\$HOME/.bashrc"; fi
. $(printf '%q' "$venv/bin/activate")
export PATH=$(printf '%q' "$tools_bin"):"\$PATH"
rm -f $(printf '%q' "$rcfile")
echo $(printf '%q' "$banner")
RC
    exec bash --rcfile "$rcfile" -i
fi

# Any other shell: do what activate does, by hand.
export VIRTUAL_ENV="$venv"
export PATH="$tools_bin:$venv/bin:$PATH"
unset PYTHONHOME
echo "$banner"
exec "$user_shell" -i

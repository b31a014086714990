#!/usr/bin/env bash
# Runs shellcheck on every shell script in the repository:
# .ci/run, scripts/*.sh, every *.sh git knows about (tracked, or untracked and
# not ignored), and every such file whose first line is a sh/bash shebang.
#
# SHELLCHECK names the binary to use (the Makefile passes .venv/bin/shellcheck).
set -euo pipefail
shopt -s nullglob

cd "$(dirname "${BASH_SOURCE[0]}")/.."
shellcheck=${SHELLCHECK:-shellcheck}

candidates=()
if [[ -f .ci/run ]]; then
    candidates+=(.ci/run)
fi
candidates+=(scripts/*.sh)

# Every file of the repository, NUL-separated, without ignored ones.
list_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard
    else
        find . \( -path ./.git -o -path ./target -o -path ./.venv -o -path ./.tools \) -prune \
            -o -type f -printf '%P\0'
    fi
}

while IFS= read -r -d '' file; do
    [[ -f $file ]] || continue # tracked, but deleted in the work tree
    if [[ $file == *.sh ]]; then
        candidates+=("$file")
        continue
    fi
    first_line=
    IFS= read -r first_line <"$file" || true
    if [[ $first_line =~ ^#!.*[/\ ](ba|da|k)?sh([[:space:]]|$) ]]; then
        candidates+=("$file")
    fi
done < <(list_files)

mapfile -d '' -t files < <(printf '%s\0' "${candidates[@]}" | sort -zu)

echo "$("$shellcheck" --version | sed -n 's/^version: /shellcheck /p') on ${#files[@]} files: ${files[*]}"
"$shellcheck" --external-sources "${files[@]}"
echo "shellcheck: ok"

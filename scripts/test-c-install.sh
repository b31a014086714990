#!/usr/bin/env bash
# `make install` into a temporary prefix, then builds and runs examples/c/lab.c from outside
# the repository with nothing but pkg-config pointing at that prefix: shared (checking the
# SONAME it records) and static. Removes the prefix afterwards.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/allocate-c-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

make -C "$root" --no-print-directory install PREFIX="$work/prefix"
mkdir "$work/src"
cp "$root/examples/c/lab.c" "$work/src/"
cd "$work/src"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"

# Shared: the program records the SONAME, and runs with the prefix's library.
# shellcheck disable=SC2046 # pkg-config's flags are meant to split
cc -std=c11 -Wall -Wextra -Werror lab.c $(pkg-config --cflags --libs allocate) -o lab-shared
soname=$(readelf -d "$work/prefix/lib/liballocate.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
needed=$(readelf -d lab-shared | sed -n 's/.*(NEEDED).*\[\(liballocate[^]]*\)\]/\1/p')
if [[ -z $soname || $soname != "$needed" ]]; then
    echo "test-c-install: SONAME '$soname' but the program needs '$needed'" >&2
    exit 1
fi
[[ -e $work/prefix/lib/$soname ]] || { echo "test-c-install: no $soname installed" >&2; exit 1; }
LD_LIBRARY_PATH="$work/prefix/lib" ./lab-shared > shared.out

# Static: the archive named by the .pc's libdir, with its private libraries.
libdir=$(pkg-config --variable=libdir allocate)
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror lab.c $(pkg-config --cflags allocate) "$libdir/liballocate.a" \
    $(pkg-config --libs-only-l --static allocate | sed 's/-lallocate//') -o lab-static
./lab-static > static.out

# The engine is deterministic: both print the same run, which ends in an expiry.
if ! grep -q "^expired" shared.out || ! cmp -s shared.out static.out; then
    echo "test-c-install: the two builds of lab.c printed different things" >&2
    cat shared.out static.out >&2
    exit 1
fi
echo "test-c-install: lab.c built from outside the repo against $soname with pkg-config, shared and static"

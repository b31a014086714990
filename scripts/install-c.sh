#!/usr/bin/env bash
# Installs the C library as a C programmer expects it (what `make install` runs):
#   INCLUDEDIR/allocate.h
#   LIBDIR/liballocate.a
#   LIBDIR/liballocate.so.VERSION, with liballocate.so.ABI (its SONAME) and liballocate.so
#   LIBDIR/pkgconfig/allocate.pc
# Usage: install-c.sh BUILD_DIR DESTDIR PREFIX LIBDIR INCLUDEDIR VERSION
# BUILD_DIR holds the release build (cargo build --release -p allocate-c); DESTDIR may be
# empty and is prepended to every path written, not to those inside allocate.pc.
set -euo pipefail

if [[ $# -ne 6 ]]; then
    echo "usage: $0 BUILD_DIR DESTDIR PREFIX LIBDIR INCLUDEDIR VERSION" >&2
    exit 2
fi
build=$1 destdir=$2 prefix=$3 libdir=$4 includedir=$5 version=$6
root=$(cd "$(dirname "$0")/.." && pwd)

# The ABI part of the version: major.minor below 1.0, else major (as allocate-c/build.rs).
IFS=. read -r major minor _ <<<"$version"
if [[ $major == 0 ]]; then abi="0.$minor"; else abi=$major; fi

for built in "$build/liballocate.a" "$build/liballocate.so"; do
    [[ -f $built ]] || { echo "$0: $built is missing: build allocate-c (release) first" >&2; exit 1; }
done

install -d "$destdir$libdir/pkgconfig" "$destdir$includedir"
install -m 644 "$root/include/allocate.h" "$destdir$includedir/allocate.h"
install -m 644 "$build/liballocate.a" "$destdir$libdir/liballocate.a"
install -m 755 "$build/liballocate.so" "$destdir$libdir/liballocate.so.$version"
ln -sfn "liballocate.so.$version" "$destdir$libdir/liballocate.so.$abi"
ln -sfn "liballocate.so.$abi" "$destdir$libdir/liballocate.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" "$root/allocate-c/allocate.pc.in" \
    > "$destdir$libdir/pkgconfig/allocate.pc"
chmod 644 "$destdir$libdir/pkgconfig/allocate.pc"
echo "installed allocate $version (SONAME liballocate.so.$abi) under $destdir$prefix"

#!/bin/sh
# Every program says which build it is: version.sh VERSION PROGRAM...
# Each PROGRAM --version prints one line "NAME VERSION (commit C)" and exits
# 0; all of them name the same build (and the same as libfaultline's
# fl_version(), which tests/unit/test_manager.c checks against VERSION).
set -u
want=$1
shift
first=
for prog in "$@"; do
    name=$(basename "$prog")
    out=$("$prog" --version 2>&1)
    rc=$?
    [ $rc -eq 0 ] || { echo "FAIL: $name --version exited with $rc: $out"; exit 1; }
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: $name --version: not one line: $out"; exit 1; }
    case $out in
    "$name $want (commit "?*")") ;;
    *) echo "FAIL: $name --version printed '$out', want '$name $want (commit ...)'"; exit 1 ;;
    esac
    build=${out#"$name "}
    [ -z "$first" ] && first=$build
    [ "$build" = "$first" ] || { echo "FAIL: $name is $build, the others $first"; exit 1; }
    echo "$out"
done

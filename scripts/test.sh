#!/usr/bin/env bash
# Quick start 2: build with -Werror and run the whole suite twice, plain and
# under ASan+UBSan, then both fuzzers briefly. Ends with the line
# "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
fl_setup

passed=0 failed=0 skipped=0
failures=$(mktemp /tmp/faultline-failures.XXXXXX)
trap 'rm -f "$failures"' EXIT
# The head and tail of a failed test's output, kept for the end of this script's
# output: that end is the part of a long CI log a reader sees first.
note_failures() { # name, testlog.json
    python3 - "$@" >>"$failures" <<'PY'
import json, sys
for line in open(sys.argv[2]):
    t = json.loads(line)
    if t["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
        continue
    out = (t.get("stdout") or "").splitlines()
    if len(out) > 30:  # the head too: a soak prints its seed there
        out = out[:3] + ["[...]"] + out[-25:]
    print(f"--- {sys.argv[1]}: {t['name']}: {t['result']} (exit {t['returncode']}, {t['duration']:.1f} s)")
    print("\n".join(out))
PY
}
run_suite() { # name, build dir, meson options...
    local name=$1 dir=$2
    shift 2
    echo "== $name build"
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Dwerror=true "$@" >/dev/null || { failed=$((failed + 1)); return; }
    fi
    if ! ninja -C "$dir"; then
        echo "$name: build failed"
        failed=$((failed + 1))
        return
    fi
    echo "== $name tests"
    meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 2
    local log="$dir/meson-logs/testlog.txt"
    local ok fail skip
    ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    fail=$((${fail:-0} + $(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -1)))
    skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0}))
    skipped=$((skipped + ${skip:-0}))
    note_failures "$name" "$dir/meson-logs/testlog.json"
}

run_suite plain build-test

# An out-of-tree component builds against the installed faultline.pc.
echo "== out-of-tree build against faultline.pc"
prefix=$(mktemp -d /tmp/faultline-prefix.XXXXXX)
[ -f build-install/build.ninja ] ||
    meson setup build-install -Dtests=false -Dexamples=false >/dev/null
oot_log=$(mktemp /tmp/faultline-oot.XXXXXX)
if meson configure build-install --prefix "$prefix" >"$oot_log" 2>&1 &&
    ninja -C build-install install >>"$oot_log" 2>&1 &&
    PKG_CONFIG_PATH="$(dirname "$(find "$prefix" -name faultline.pc)")" \
        sh -c 'cc -std=c17 -Wall -Werror examples/share/share.c examples/common/example.c -o "$1/share" $(pkg-config --cflags --libs faultline)' _ "$prefix" >>"$oot_log" 2>&1 &&
    [ -x "$prefix/bin/faultline-core" ]; then
    echo "out-of-tree build: OK"
    passed=$((passed + 1))
else
    echo "out-of-tree build: FAILED"
    failed=$((failed + 1))
    { echo "--- out-of-tree build: FAILED"; tail -n 25 "$oot_log"; } | tee -a "$failures"
fi
rm -f "$oot_log"
rm -rf "$prefix"
# handle_sigbus=0: --unresolvable=sigbus is tested to kill with SIGBUS, which
# ASan would otherwise turn into its own report and exit code.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:handle_sigbus=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite "asan+ubsan" build-asan -Db_sanitize=address,undefined -Db_lundef=false

# Fuzzing, bounded: each fuzzer for 30 s (scripts/fuzz.sh; long runs are
# doc/fuzzing.md's business). One entry: a crash, leak or timeout fails it.
echo "== fuzz (30 s per fuzzer)"
if fl_setup_fuzz; then
    bash scripts/fuzz.sh 30
    rc=$?
else
    rc=77
fi
case $rc in
0) passed=$((passed + 1)) ;;
77)
    echo "fuzz: SKIPPED: clang with libFuzzer is not available"
    skipped=$((skipped + 1))
    ;;
*)
    echo "fuzz: FAILED"
    echo "--- fuzz: FAILED (exit $rc; its output is above)" >>"$failures"
    failed=$((failed + 1))
    ;;
esac

if [ -s "$failures" ]; then
    echo
    echo "== what failed (the end of each one's output)"
    cat "$failures"
fi
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

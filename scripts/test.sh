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
# Count a suite's results from meson's testlog.json, once: prints "passed
# failed skipped" (EXPECTEDFAIL counts as passed; FAIL, TIMEOUT, ERROR,
# UNEXPECTEDPASS, INTERRUPT as failed). For each failure, the head and tail
# of its output (with the test programs' "FAIL case: reason" lines) and the end
# of its stderr go to $failures, for the end of this script's output: that
# end is the part of a long CI log a reader sees first.
count_results() { # name, testlog.json
    python3 - "$@" "$failures" <<'PY'
import json, sys
name, log, notes = sys.argv[1:4]
counts = {"passed": 0, "failed": 0, "skipped": 0}
with open(notes, "a") as out:
    for line in open(log):
        t = json.loads(line)
        if t["result"] in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
            continue
        if t["result"] == "SKIP":
            counts["skipped"] += 1
            continue
        counts["failed"] += 1
        lines = (t.get("stdout") or "").splitlines()
        if len(lines) > 30:  # the head too: a soak prints its seed there
            lines = lines[:3] + ["[...]"] + lines[-25:]
        err = (t.get("stderr") or "").splitlines()[-10:]
        print(f"--- {name}: {t['name']}: {t['result']} (exit {t['returncode']}, {t['duration']:.1f} s)", file=out)
        print("\n".join(lines), file=out)
        if err:
            print("[the end of its stderr]", file=out)
            print("\n".join(err), file=out)
print(counts["passed"], counts["failed"], counts["skipped"])
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
    local ok fail skip
    read -r ok fail skip < <(count_results "$name" "$dir/meson-logs/testlog.json") ||
        { echo "$name: no test results"; fail=1; }
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0}))
    skipped=$((skipped + ${skip:-0}))
}

# The kernel log's length and last line before the suites: what they add to
# it is checked at the end (suites that drive userfaultfd this hard can trip
# the kernel).
dmesg_before=$(dmesg 2>/dev/null | wc -l) && [ "$dmesg_before" -gt 0 ] || dmesg_before=""
dmesg_last=$(dmesg 2>/dev/null | tail -n 1)

run_suite plain build-test

# An out-of-tree component and manager build against the installed
# faultline.pc, with the installed headers and helpers only.
echo "== out-of-tree build against faultline.pc"
prefix=$(mktemp -d /tmp/faultline-prefix.XXXXXX)
[ -f build-install/build.ninja ] ||
    meson setup build-install -Dtests=false -Dexamples=false >/dev/null
oot_log=$(mktemp /tmp/faultline-oot.XXXXXX)
if meson configure build-install --prefix "$prefix" >"$oot_log" 2>&1 &&
    ninja -C build-install install >>"$oot_log" 2>&1 &&
    PKG_CONFIG_PATH="$(dirname "$(find "$prefix" -name faultline.pc)")" \
        sh -c 'for src in examples/share/share.c examples/lazy-alloc/manager.c; do
                   cc -std=c17 -Wall -Werror "$src" -o "$1/oot-$(basename "$src" .c)" $(pkg-config --cflags --libs faultline) || exit 1
               done' _ "$prefix" >>"$oot_log" 2>&1 &&
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
# The sanitizers' options are the default test setup's (meson.build).
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

# New WARNING/BUG/Oops lines in the kernel log since the suites started fail
# the run (the speculative-execution notes some kernels log are no such line).
echo "== kernel log"
if [ -z "$dmesg_before" ]; then
    echo "kernel log: SKIPPED: dmesg is not readable here"
    skipped=$((skipped + 1))
else
    # The lines after the one that was last; where a full ring buffer has
    # rotated it away since, all of it.
    bad=$(dmesg 2>/dev/null | BEFORE="$dmesg_before" LAST="$dmesg_last" awk '
        { line[NR] = $0 }
        END {
            from = line[ENVIRON["BEFORE"]] == ENVIRON["LAST"] ? ENVIRON["BEFORE"] : 0
            for (i = NR; !from && i > 0; i--) if (line[i] == ENVIRON["LAST"]) from = i
            for (i = from + 1; i <= NR; i++) print line[i]
        }' | grep -E 'WARNING|BUG|Oops' | grep -vE 'hw-vuln|mitigation|Speculative')
    if [ -z "$bad" ]; then
        echo "kernel log: no new WARNING/BUG/Oops lines"
        passed=$((passed + 1))
    else
        echo "kernel log: FAILED: $(printf '%s\n' "$bad" | wc -l) new WARNING/BUG/Oops lines"
        failed=$((failed + 1))
        { echo "--- kernel log: new WARNING/BUG/Oops lines since the suites started"; printf '%s\n' "$bad" | head -n 40; } >>"$failures"
    fi
fi

if [ -s "$failures" ]; then
    echo
    echo "== what failed (the end of each one's output)"
    cat "$failures"
fi
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

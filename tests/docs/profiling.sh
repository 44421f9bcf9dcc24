#!/usr/bin/env bash
# doc/profiling.md's commands, run as they are written: the code blocks
# marked <!-- test --> (and <!-- test: bpftrace --> where bpftrace is
# installed) become one script, run from the source tree with BUILD set to
# this build tree. The bench starts a private core of its own for each
# workload. Then every USDT probe of core and of the bench (libfaultline's)
# must have fired, the uprobes too, and bpftrace's histogram must be there.
#
# usage: profiling.sh SOURCE_DIR BUILD_DIR
# With FAULTLINE_PROFILING_LOG=FILE the commands' output is kept there.
# Exit 0 pass, 1 fail, 77 skipped: not root, no perf, a build without USDT
# probes, no bench, or no uprobe support in the kernel.
set -u
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
doc=$src/doc/profiling.md
core=$build/faultline-core bench=$build/src/tools/bench/faultline-bench

skip() {
    echo "SKIP: $*"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "perf probe needs root"
command -v readelf >/dev/null || skip "readelf (binutils) is not installed"
command -v perf >/dev/null || skip "perf is not installed (Debian: apt-get install linux-perf)"
perf version >/dev/null 2>&1 || skip "perf does not run here: $(perf version 2>&1 | head -1)"
[ -x "$bench" ] || skip "faultline-bench is not built (meson option tools)"
readelf -n "$core" | grep -q 'Provider: faultline' ||
    skip "this build has no USDT probes (meson option usdt; Debian: systemtap-sdt-dev)"
[ -e /sys/kernel/tracing/uprobe_events ] || [ -e /sys/kernel/debug/tracing/uprobe_events ] ||
    skip "no uprobe_events in tracefs: the kernel has no uprobes, or tracefs is not mounted"

fail=0
# No probe argument may be a constant ($N): perf cannot fetch it.
for bin in "$core" "$bench"; do
    bad=$(readelf -n "$bin" | awk '/Provider: faultline/ { p = 1 } p && /Name:/ { n = $2 }
        p && /Arguments:/ { if ($0 ~ /\$/) print n ": " $0; p = 0 }')
    if [ -n "$bad" ]; then
        echo "FAIL: a probe argument of $bin is a constant:"
        echo "$bad"
        fail=1
    fi
done
probes=$(for bin in "$core" "$bench"; do
    readelf -n "$bin" | awk '/Provider: faultline/ { p = 1; next } p && /Name:/ { print $2; p = 0 }'
done | sort -u)
[ -n "$probes" ] || { echo "FAIL: no probe names in the ELF notes"; exit 1; }

tmp=$(mktemp -d /tmp/faultline-profiling.XXXXXX)
script=$tmp/doc.sh
with_bpftrace=0
if ! command -v bpftrace >/dev/null; then
    echo "note: bpftrace is not installed; its recipe is left out"
elif ! timeout 60 bpftrace -e 'BEGIN { exit(); }' >/dev/null 2>"$tmp/bpftrace.err"; then
    echo "note: bpftrace cannot run here; its recipe is left out:"
    grep -v RLIMIT_MEMLOCK "$tmp/bpftrace.err" | head -3
else
    with_bpftrace=1
fi
# Each marked block, in the order of the page.
awk -v bt=$with_bpftrace '
    inblock && /^```$/ { inblock = 0; next }
    inblock { print; next }
    /^<!-- test -->$/ { want = 1; next }
    /^<!-- test: bpftrace -->$/ { want = bt; next }
    want && /^```sh$/ { inblock = 1; print "# --- doc/profiling.md:" NR; }
    { want = 0 }
' "$doc" >"$script.body"
nblocks=$(grep -c '^# --- ' "$script.body")
[ "$nblocks" -ge 5 ] || { echo "FAIL: only $nblocks marked blocks in $doc"; exit 1; }
{
    echo "set -ex"
    cat "$script.body"
} >"$script"

# Tracefs is one for the machine: one run of this page at a time, here and
# in every other tree on this machine.
exec 9>/tmp/faultline-profiling-test.lock
flock -w 900 9 || { echo "FAIL: another run of this test holds the lock for 15 minutes"; exit 1; }

cleanup() {
    # The script's process group: a bpftrace it left running, if it failed.
    [ -n "${runner:-}" ] && kill -INT -- -"$runner" 2>/dev/null && sleep 1 &&
        kill -KILL -- -"$runner" 2>/dev/null
    perf probe -q -d 'sdt_faultline:*' 2>/dev/null
    perf probe -q -d 'probe_faultline:*' 2>/dev/null
    # perf probe and perf record put copies of these builds into ~/.debug.
    for bin in "$core" "$bench" "$build/libfaultline.so"; do
        perf buildid-cache --purge "$(readlink -f "$bin")" >/dev/null 2>&1
    done
    [ -n "${FAULTLINE_PROFILING_LOG:-}" ] && cp "$tmp/log" "$FAULTLINE_PROFILING_LOG"
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "running $nblocks blocks of $doc (BUILD=$build)"
log=$tmp/log
cd "$src" || exit 1
BUILD=$build setsid -w bash "$script" >"$log" 2>&1 &
runner=$!
wait $runner
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: a command of $doc failed (exit $rc); the end of its output:"
    tail -n 40 "$log"
    exit 1
fi

# perf stat's counts: "   2400      sdt_faultline:fault_entry"
count() { # event
    awk -v ev="$1" '$2 == ev { gsub(",", "", $1); if ($1 + 0 > n) n = $1 + 0 } END { print n + 0 }' "$log"
}
fired() { # event, what it is, why a count of 0 may be
    local n
    n=$(count "$1")
    if [ "$n" -gt 0 ]; then
        echo "ok: $2$1 fired $n times"
    else
        echo "FAIL: $2$1 never fired$3"
        fail=1
    fi
}
for p in $probes; do
    fired "sdt_faultline:$p" "" " (perf stat counted 0 or did not list it)"
done
for u in $(sed -n 's/^perf probe -x \$BUILD\/faultline-core \([a-z_]*\)$/\1/p' "$script"); do
    fired "probe_faultline:$u" "uprobe " ""
done
if [ $with_bpftrace -eq 1 ]; then
    if grep -q '^@us\[' "$log" && grep -qE '^\[[0-9KM]+, [0-9KM]+\) +[0-9]+ \|@' "$log"; then
        echo "ok: bpftrace printed the latency histogram ($(grep -c '^@us\[' "$log") maps)"
    else
        echo "FAIL: no histogram from the bpftrace recipe"
        fail=1
    fi
fi
if [ $fail -ne 0 ]; then
    echo "--- the end of the commands' output"
    tail -n 60 "$log"
fi
exit $fail

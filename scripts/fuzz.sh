#!/usr/bin/env bash
# Build the libFuzzer harnesses (clang, ASan+UBSan, core instrumented too) in
# their own build directory and run each for SECONDS, one after the other.
#
# usage: scripts/fuzz.sh SECONDS [fuzz_proto|fuzz_session ...]
#
# Exit 0: no crash; 1: a crash, leak or timeout (the input is saved under
# $dir/artifacts/<fuzzer>/; doc/fuzzing.md says how to turn it into a
# regression test); 77: clang or libFuzzer is not available.
# Environment: FL_FUZZ_BUILD (build directory, default build-fuzz),
# FL_FUZZ_ARGS (more libFuzzer options, e.g. -dict=... or -seed=1).
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:-}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh SECONDS [fuzz_proto|fuzz_session ...]" >&2
    exit 2
fi
shift
fuzzers=("$@")
[ ${#fuzzers[@]} -gt 0 ] || fuzzers=(fuzz_proto fuzz_session)
dir=${FL_FUZZ_BUILD:-build-fuzz}

probe=$(mktemp -d /tmp/fl-fuzz-probe.XXXXXX)
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n; }' >"$probe/p.c"
if ! command -v clang >/dev/null ||
    ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
    rm -rf "$probe"
    echo "fuzz: SKIPPED: clang with libFuzzer is not available (Debian: apt-get install clang libclang-rt-dev)"
    exit 77
fi
rm -rf "$probe"

if [ ! -f "$dir/build.ninja" ]; then
    # fuzzer-no-link on every file gives libFuzzer coverage of core itself,
    # not only of the harnesses; UBSan findings are crashes, not warnings.
    CC=clang meson setup "$dir" -Dwerror=true -Dfuzz=true -Dtests=false -Dexamples=false \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" >/dev/null ||
        exit 1
fi
targets=(tests/fuzz/gen_corpus)
for f in "${fuzzers[@]}"; do targets+=("tests/fuzz/$f"); done
if ! out=$(ninja -C "$dir" "${targets[@]}" 2>&1); then
    echo "$out" | grep -v '^\[' | tail -30
    echo "fuzz: build failed"
    exit 1
fi
# The seeds follow the protocol as it is now (commit what changed).
"$dir/tests/fuzz/gen_corpus" tests/fuzz/corpus || exit 1

status=0
for f in "${fuzzers[@]}"; do
    work="$dir/corpus/$f" artifacts="$dir/artifacts/$f"
    mkdir -p "$work" "$artifacts"
    echo "== $f for ${secs}s (corpus $work + tests/fuzz/corpus/$f)"
    log="$dir/$f.log"
    # New inputs go to the first directory, the build's own; the committed
    # seeds are only read. -timeout: a descriptor leak shows as a hang.
    # shellcheck disable=SC2086
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$dir/tests/fuzz/$f" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FL_FUZZ_ARGS:-} \
        "$work" "tests/fuzz/corpus/$f" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "$f: ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov: ?}, exit $rc"
    echo "$(date -u +%FT%TZ) $f ${secs}s execs=${execs:-?} exec/s=${rate:-?} ${cov:-} rc=$rc" \
        >>"$dir/fuzz-runs.log"
    if [ $rc -ne 0 ]; then
        status=1
        grep -E "ERROR|SUMMARY|fuzz_session:|fuzz_proto:|Test unit written" "$log" | head -20
        echo "$f: FAILED (full log: $log); reproduce with: $dir/tests/fuzz/$f <artifact>"
    fi
done
exit $status

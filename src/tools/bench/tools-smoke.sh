#!/bin/sh
# faultline-bench's own arithmetic and its JSON tools: one workload in --quick
# mode with --json, then plot and compare on that JSON. No timing is judged,
# only that the numbers are consistent: no hop of the client's path is
# negative, core's loop thread never used more CPU than all of core's
# threads, the CPU clock is named; the progress line goes to stderr; plot
# writes an SVG per workload (skipped without python3-matplotlib); compare
# finds nothing moved between a run and itself and flags a case made twice
# as slow.
set -u
bench=$1
dir=$(mktemp -d /tmp/flbench-tools.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}
FAULTLINE_BENCH_PROGRESS=1 "$bench" --quick --json "$dir/r.json" reflect >"$dir/out" 2>"$dir/err"
rc=$?
cat "$dir/out" "$dir/err"
[ $rc -eq 0 ] || fail "faultline-bench --quick reflect exited with $rc"
# The progress line, on stderr only.
grep -q '^faultline-bench: \[1/1\] reflect 0:00, about 0:0[0-9] left of it, 0:0[0-9] in all$' "$dir/err" ||
    fail "no progress line on stderr"
grep -q '\[1/1\]' "$dir/out" && fail "the progress line went to stdout"
grep -q '^CPU times: clock_getcpuclockid, 1 ns' "$dir/out" || fail "no CPU clock line"

python3 - "$dir/r.json" <<'PY' || fail "the JSON's numbers"
import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["results"]
extra = {r["extra"]: r["value"] for r in rows if "extra" in r}
cases = [r for r in rows if "case" in r]
assert cases, "no case"
for r in cases:
    for side in ("faultline", "baseline"):
        cdf = r[side]["cdf_us"]
        assert len(cdf) > 10, "no CDF for %s %s" % (r["case"], side)
        ps = [p for p, v in cdf]
        vs = [v for p, v in cdf]
        assert ps == sorted(ps) and vs == sorted(vs), "CDF not monotonic"
        assert ps[0] == 0 and ps[-1] == 1
hops = {k: v for k, v in extra.items() if " hop: " in k}
assert len(hops) >= 5, hops
for k, v in hops.items():
    assert v is None or v >= 0, "negative hop: %s = %s" % (k, v)
total = extra["faultline: core CPU per fault (all threads)"]
loop = extra["faultline: core loop thread CPU per fault"]
assert 0 <= loop <= total, "core loop CPU %s > core total %s" % (loop, total)
assert "clock_getcpuclockid" in doc["cpu_clock"], doc["cpu_clock"]
print("json: %d cases, hops %s, core CPU %.2f us/fault (loop %.2f)" %
      (len(cases), ", ".join("%.1f" % v for v in hops.values() if v is not None), total, loop))
PY

"$bench" plot "$dir/r.json" "$dir/plots" >"$dir/out" 2>&1
rc=$?
cat "$dir/out"
if [ $rc -eq 77 ]; then
    echo "plot: skipped (no matplotlib)"
else
    [ $rc -eq 0 ] || fail "plot exited with $rc"
    for f in reflect ratios; do
        head -c 512 "$dir/plots/$f.svg" 2>/dev/null | grep -q '<svg' || fail "plot wrote no $f.svg"
    done
fi

"$bench" compare "$dir/r.json" "$dir/r.json" >"$dir/out" 2>&1
rc=$?
cat "$dir/out"
[ $rc -eq 0 ] || fail "compare of a run with itself exited with $rc"
grep -q '(0 worse)' "$dir/out" || fail "compare of a run with itself flagged something"
grep -q '^reflect  *1000 faults, 1 client  *p50_us .* 1\.00 ' "$dir/out" || fail "compare: no reflect p50 row"

# faultline twice as slow, its baseline unchanged: flagged, exit 1.
python3 - "$dir/r.json" "$dir/slow.json" <<'PY' || fail "making slow.json"
import json, sys
doc = json.load(open(sys.argv[1]))
for r in doc["results"]:
    if "case" in r:
        r["faultline"]["p50_us"] *= 2
        r["faultline"]["throughput"] /= 2
json.dump(doc, open(sys.argv[2], "w"))
PY
"$bench" compare "$dir/r.json" "$dir/slow.json" >"$dir/out" 2>&1
rc=$?
cat "$dir/out"
[ $rc -eq 1 ] || fail "compare of a slowed run exited with $rc, want 1"
grep -q '^reflect  *1000 faults, 1 client  *p50_us .* 2\.00 .*WORSE' "$dir/out" ||
    fail "compare did not flag the doubled p50"
grep -q '^reflect  *1000 faults, 1 client  *throughput .* 0\.50 .*WORSE' "$dir/out" ||
    fail "compare did not flag the halved throughput"
"$bench" compare "$dir/r.json" >"$dir/out" 2>&1
[ $? -eq 2 ] || fail "compare with one file should exit 2"
echo "tools smoke: reflect's numbers consistent, plot and compare work"

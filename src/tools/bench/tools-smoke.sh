#!/bin/sh
# faultline-bench's own arithmetic and its JSON tools: one workload in --quick
# mode with --json, then plot and compare on that JSON. No timing is judged,
# only that the numbers are consistent: no hop of the client's path is
# negative, core's loop thread never used more CPU than all of core's
# threads, the CPU clock is named, every row carries the load; the progress
# line goes to stderr; plot writes an SVG per workload (skipped without
# python3-matplotlib); compare finds nothing moved between a run and itself
# and flags a case made twice as slow. Then --quick --repeat 2 reflect (a
# summary per case: median within the range of the runs' ratios, the load of
# each run) and --quick pager (every case on three sides, every chunk
# counted, each side read the file right: the bench fails otherwise).
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
assert len(hops) >= 8, hops
for k, v in hops.items():
    assert v is None or v >= 0, "negative hop: %s = %s" % (k, v)
assert {r.get("baseline_name") for r in cases} == {"pipeline", "floor"}, cases
for r in rows:
    assert isinstance(r.get("load1"), (int, float)), "no load in %s" % r
for d in ("version", "commit", "build_type", "kernel", "cpus", "load1"):
    assert doc.get(d) not in (None, ""), "no %s in the JSON" % d
for side in ("pipeline", "faultline", "floor"):
    v = extra[side + ": context switches per fault, all processes"]
    assert v is not None and v > 0, (side, v)
    s = extra[side + ": system calls per fault, all processes"]
    assert s is None or s >= 1, (side, s)  # None: not countable here
total = extra["faultline: core (all threads) CPU per fault"]
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

# --repeat: each run's rows, then the summary of the ratios.
"$bench" --quick --repeat 2 --json "$dir/rep.json" reflect >"$dir/out" 2>"$dir/err"
rc=$?
cat "$dir/out"
[ $rc -eq 0 ] || { cat "$dir/err"; fail "--quick --repeat 2 reflect exited with $rc"; }
grep -q '^== reflect, run 2 of 2, load [0-9.]* at its start' "$dir/out" || fail "no second run"
grep -q '^== reflect: 2 runs, median' "$dir/out" || fail "no summary of the runs"
python3 - "$dir/rep.json" <<'PY' || fail "the --repeat JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["repeat"] == 2
rows = doc["results"]
runs = {r.get("run") for r in rows if "case" in r}
assert runs == {1, 2}, runs
summ = [r for r in rows if "repeat" in r]
keys = {r["repeat"] for r in summ}
assert "1000 faults, 1 client" in keys and "pipeline / floor, p50" in keys, keys
for r in summ:
    assert r["runs"] == 2 and len(r["load1_each"]) == 2, r
    for q, v in r["ratio"].items():
        each = [x for x in v["each"] if x is not None]
        assert len(each) == 2, (r["repeat"], q, v)
        assert v["min"] <= v["median"] <= v["max"], (r["repeat"], q, v)
        assert abs(v["median"] - sum(each) / 2) < 1e-3 * max(1, abs(v["median"])), v
print("repeat: %d summaries, load %s" % (len(summ), summ[0]["load1_each"]))
PY

# pager: three sides, every case.
"$bench" --quick --json "$dir/pg.json" pager >"$dir/out" 2>"$dir/err"
rc=$?
cat "$dir/out"
[ $rc -eq 0 ] || { cat "$dir/err"; fail "--quick pager exited with $rc"; }
python3 - "$dir/pg.json" <<'PY' || fail "the pager JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
rows = [r for r in doc["results"] if r["workload"] == "pager"]
cases = [r for r in rows if "case" in r]
assert len(cases) == 8, [r["case"] for r in cases]
assert sorted(r["baseline_name"] for r in cases) == ["mmap"] * 4 + ["uffd-pager"] * 4
for r in cases:
    assert isinstance(r["load1"], (int, float)), r
    for side in ("faultline", "baseline"):
        assert r[side]["throughput"] > 0, (r["case"], side)
    assert r["faultline"]["p50_us"] > 0, r["case"]
    if r["baseline_name"] == "uffd-pager":
        assert r["baseline"]["p50_us"] > 0, r["case"]
    # 64 MiB: every 4 KiB page is a chunk; sequentially, each 64 KiB chunk
    # is first touched once.
    if ", 4 KiB" in r["case"]:
        assert r["faultline"]["n"] == r["baseline"]["n"] == 16384, (r["case"], r["faultline"]["n"])
    if r["case"].startswith("sequential, 64 KiB"):
        assert r["faultline"]["n"] == r["baseline"]["n"] == 1024, (r["case"], r["faultline"]["n"])
ratios = [r for r in rows if r.get("unit") == "ratio"]
assert len(ratios) == 8 and all(r["value"] > 0 for r in ratios), ratios
assert any("64 MiB" in r.get("note", "") for r in rows), "no note of the file's size"
print("pager: %d cases, faultline / uffd-pager p50 %s" % (len(cases), ", ".join(
    "%.2f" % r["ratio"]["p50"] for r in cases if r["baseline_name"] == "uffd-pager")))
PY
echo "tools smoke: reflect's numbers consistent, plot and compare work, --repeat and pager sane"

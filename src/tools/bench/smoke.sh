#!/bin/sh
# Smoke test of faultline-bench: --quick completes, prints every workload and
# writes its JSON. No timing is judged.
set -u
bench=$1
out=$(mktemp /tmp/flbench-smoke.XXXXXX)
json=$(mktemp /tmp/flbench-smoke-json.XXXXXX)
trap 'rm -f "$out" "$json"' EXIT
"$bench" --quick --json "$json" >"$out" 2>&1
rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "faultline-bench exited with $rc"; exit 1; }
for w in touch reflect stream scale map revoke isolation forge capscale pager protocol; do
    grep -q "^== $w, load [0-9.]* at its start" "$out" || { echo "workload $w printed nothing"; exit 1; }
    grep -q "\"workload\": \"$w\"" "$json" || { echo "workload $w missing from the JSON"; exit 1; }
done
grep -q '11 workloads done, 0 failed' "$out" || { echo "not every workload completed"; exit 1; }
# Which build measured: its version and commit.
grep -q '"version": "[0-9]' "$json" || { echo "no \"version\" in the JSON"; exit 1; }
grep -q '"commit": "[^"]' "$json" || { echo "no \"commit\" in the JSON"; exit 1; }
grep -q '"build_type": "[^"]' "$json" || { echo "no \"build_type\" in the JSON"; exit 1; }
echo "smoke: every workload completed"

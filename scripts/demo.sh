#!/usr/bin/env bash
# Quick start 1: build faultline, start a core, run the demo, stop the core.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
fl_setup

build=build
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" >/dev/null

dir=$(mktemp -d /tmp/faultline-demo.XXXXXX)
export FAULTLINE_SOCKET="$dir/core.sock"
"$build/faultline-core" >"$dir/core.log" 2>&1 &
core=$!
cleanup() {
    kill "$core" 2>/dev/null && wait "$core" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 200); do [ -S "$FAULTLINE_SOCKET" ] && break; sleep 0.05; done
[ -S "$FAULTLINE_SOCKET" ] || { cat "$dir/core.log"; echo "demo: core did not start" >&2; exit 1; }
sed 's/^/[core] /' "$dir/core.log"

echo "== two components share one RAM dataspace"
"$build/examples/share"
echo
echo "== lazy-alloc: a manager backs a managed dataspace on demand (fault -> signal -> fault() -> attach -> resume)"
"$build/examples/lazy-alloc" --size 262144 --chunk 65536
echo
echo "demo: OK"

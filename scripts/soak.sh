#!/usr/bin/env bash
# The soak (doc/soak.md): build faultline-soak in its own build directory and
# run it for SECONDS (default 60). Further arguments go to faultline-soak,
# e.g. `scripts/soak.sh 600 --seed 1234` replays the choices of a run.
# Exit 0 only if every invariant held.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/setup.sh
fl_setup

secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in
'' | *[!0-9]*)
    echo "usage: scripts/soak.sh [SECONDS] [faultline-soak options]" >&2
    exit 2
    ;;
esac
dir=${FL_SOAK_BUILD:-build-soak}
if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true >/dev/null || exit 1
fi
# Only what the soak needs: a half-finished tool elsewhere must not stop it.
ninja -C "$dir" faultline-core tests/soak/faultline-soak || exit 1
exec env FAULTLINE_CORE="$PWD/$dir/faultline-core" "$dir/tests/soak/faultline-soak" \
    --duration "$secs" "$@"

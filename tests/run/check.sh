#!/bin/sh
# faultline-run's own tests: check.sh CASE. Runs faultline-run ($FAULTLINE_RUN)
# on the scenarios next to this script and checks its exit code, what it
# says, and that no process or socket of the run is left afterwards.
# Exit: 0 pass, 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
run=${FAULTLINE_RUN:?set FAULTLINE_RUN to the faultline-run binary}
out=$(mktemp /tmp/faultline-run-test.XXXXXX)
trap 'rm -rf "$out" "$out.xml" "$out.pat" "$out.core" "$out.d"' EXIT
failed=0

bad() {
    echo "FAIL: $*"
    echo "--- output:"
    sed 's/^/    /' "$out"
    failed=1
}

# Every run's temporary directory, as faultline-run announced it.
run_dirs() {
    sed -n 's|.*core on \(/tmp/faultline-run\.[^/]*\)/core\.sock.*|\1|p' "$out"
}

# No process mentions the run's directory (core's --socket, the
# components' $FAULTLINE_SOCKET), and the directory is gone. With "wait",
# give processes that were sent a signal a while to go.
check_clean() {
    dirs=$(run_dirs)
    [ -n "$dirs" ] || { bad "no 'core on' line to check cleanup against"; return; }
    for d in $dirs; do
        tries=0
        # From a file, so that grep's own command line does not match.
        echo "$d" >"$out.pat"
        while :; do
            left=$(grep -lsFf "$out.pat" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null |
                   sed 's|/proc/\([0-9]*\)/.*|\1|' | sort -u | grep -vx "$$" || true)
            [ -z "$left" ] && break
            tries=$((tries + 1))
            if [ "${1:-}" != wait ] || [ $tries -gt 200 ]; then
                bad "processes of the run in $d left: $(for p in $left; do tr '\0' ' ' </proc/$p/cmdline 2>/dev/null; echo; done)"
                return
            fi
            sleep 0.05
        done
        # The worker that cleans up may still be at it after a SIGKILL of
        # the runner.
        while [ "${1:-}" = wait ] && [ -e "$d" ] && [ $tries -lt 200 ]; do
            tries=$((tries + 1))
            sleep 0.05
        done
        [ -e "$d/core.sock" ] && bad "stale socket $d/core.sock"
        [ -e "$d" ] && bad "directory $d left"
    done
}

expect_rc() { # CODE CMD...
    code=$1
    shift
    "$@" >"$out" 2>&1
    rc=$?
    [ $rc -eq "$code" ] || bad "$*: exit $rc, want $code"
}

contains() {
    grep -qF -- "$1" "$out" || bad "output lacks: $1"
}

header() { # the text after '#! KIND ' in a scenario's first line
    sed -n "1s/^#! $2 //p" "$1"
}

case "${1:?usage: check.sh CASE}" in
broken)
    # Every broken scenario exits 2 and names the file and the line.
    for f in "$here"/broken-*.scenario; do
        want=$(header "$f" error)
        expect_rc 2 "$run" "$f"
        contains "$f:$want"
    done
    ;;
failing-manager)
    f=$here/fail-manager.scenario
    expect_rc 1 "$run" --path "$(dirname "$BROKEN_MANAGER")" "$f"
    # The verdict names the scenario's line, the tail shows the cause.
    contains "$f:6: client exited with 1, expected exit 0"
    contains '[client] client: at 0 read "page 0x1000", want "page 0"'
    contains "client: touched 16 pages, 16 wrong"
    check_clean
    ;;
failures)
    for f in "$here"/fail-*.scenario; do
        want=$(header "$f" fail)
        [ -n "$want" ] || continue
        expect_rc 1 "$run" "$f"
        contains "$want"
        check_clean
    done
    ;;
pass)
    for f in "$here"/pass-*.scenario; do
        expect_rc 0 "$run" "$f"
        contains "PASS $(basename "$f" .scenario)"
        check_clean
    done
    ;;
skip)
    expect_rc 77 "$run" "$here/skip.scenario"
    contains "requires 'a kernel feature no kernel has'"
    expect_rc 77 "$run" --tap "$here/skip.scenario"
    contains "ok 1 - skip # SKIP"
    # A kernel without userfaultfd, as a core's --check would report it.
    printf '#!/bin/sh\necho "missing  userfaultfd: no /dev/userfaultfd"\nexit 1\n' >"$out.core"
    chmod +x "$out.core"
    expect_rc 77 "$run" --core "$out.core" "$here/skip-kernel.scenario"
    contains "requires 'userfaultfd': missing  userfaultfd: no /dev/userfaultfd"
    ;;
report)
    expect_rc 1 "$run" --tap --keep-going -j 2 --junit "$out.xml" \
        "$here/pass-tokens.scenario" "$here/fail-exit.scenario"
    contains "1..2"
    contains "ok "
    contains "- pass-tokens"
    contains "not ok "
    contains "- fail-exit: "
    grep -q 'tests="2" failures="1" errors="0" skipped="0"' "$out.xml" || bad "junit: $(head -3 "$out.xml")"
    # Which build ran them: its version and commit, as properties.
    grep -q '<property name="faultline.version" value="[0-9][^"]*"/>' "$out.xml" ||
        bad "junit: no faultline.version property: $(head -6 "$out.xml")"
    grep -q '<property name="faultline.commit" value="[^"][^"]*"/>' "$out.xml" ||
        bad "junit: no faultline.commit property: $(head -6 "$out.xml")"
    check_clean
    # Without --keep-going the run stops at the first failure.
    expect_rc 1 "$run" "$here/fail-exit.scenario" "$here/pass-tokens.scenario"
    contains "SKIP pass-tokens: not run: an earlier scenario failed"
    # A broken scenario among others makes the run exit 2.
    expect_rc 2 "$run" --keep-going "$here/pass-running.scenario" "$here/broken-token.scenario"
    contains "faultline-run: 1 passed, 0 failed, 1 broken, 0 skipped"
    ;;
user)
    # Components as other users: as root the scenario passes (core serves
    # them, the runner passed --allow-uid for each); for anyone else it is
    # skipped, saying why.
    f=$here/user.scenario
    path=$(dirname "$BROKEN_MANAGER")
    if [ "$(id -u)" = 0 ]; then
        # With a supplementary group of the runner's that the users must
        # not keep.
        groups=
        command -v setpriv >/dev/null && groups="setpriv --groups 4242"
        expect_rc 0 $groups "$run" --path "$path" "$f"
        contains "start client as user 65533 (uid 65533): "
        contains "[whoami] uid 65534 gid 65534 groups 65534"
        contains "PASS user"
        check_clean
        # The same scenario, run by nobody: its own uid needs no root, the
        # client's does.
        if command -v setpriv >/dev/null; then
            expect_rc 77 setpriv --reuid=65534 --regid=65534 --clear-groups \
                "$run" --path "$path" "$f"
            contains "SKIP user: $f:15: runs client as user 65533, which needs faultline-run to run as root"
        fi
    else
        expect_rc 77 "$run" --path "$path" "$f"
        contains "which needs faultline-run to run as root"
    fi
    ;;
ctl)
    # On failure the report asks faultline-ctl for core's sessions and
    # pending faults while core still runs; a stand-in shows how it is called.
    mkdir "$out.d"
    cp "$run" "$out.d/faultline-run"
    printf '#!/bin/sh\necho "called with: $*"\n[ -S "$2" ] && echo "core still listening"\n' \
        >"$out.d/faultline-ctl"
    chmod +x "$out.d/faultline-ctl"
    expect_rc 1 "$out.d/faultline-run" --core "${FAULTLINE_CORE:?}" "$here/fail-exit.scenario"
    contains "[faultline-run] --- faultline-ctl sessions faults, taken when the failure was seen, before anything was stopped ---"
    contains "[faultline-ctl] called with: --socket $(run_dirs)/core.sock sessions faults"
    contains "[faultline-ctl] core still listening"
    check_clean
    ;;
snapshot)
    # The real faultline-ctl, next to faultline-run in the build tree. Its
    # view is taken before the runner stops anything: a stalled client's
    # fault waits on the manager's map, whose signal the manager took, and
    # the manager still runs.
    path=$(dirname "$BROKEN_MANAGER")
    running_in_snapshot() { # program, what is missing else
        grep -q "^  \\[faultline-ctl\\] session [0-9]* pid [0-9]* ($1): running, RAM " "$out" || bad "$2"
    }
    f=$here/snapshot-stall.scenario
    expect_rc 1 "$run" --path "$path" "$f"
    contains "$f: timeout after 3 s; client still running"
    contains "--- faultline-ctl sessions faults, taken when the failure was seen, before anything was stopped ---"
    running_in_snapshot broken-manager "no running manager in the snapshot"
    running_in_snapshot lazy-client "no client in the snapshot"
    grep -q '^  \[faultline-ctl\] map \([0-9]*\.[0-9]*\) of session [0-9]* (pid [0-9]* (broken-manager), running): 1 fault waiting, fault handler signal [0-9.]* taken' "$out" ||
        bad "no map with its fault and the signal taken in the snapshot"
    grep -q '^  \[faultline-ctl\]   fault 0 on map [0-9]*\.[0-9]*: [A-Z]* at 0 by session [0-9]* thread [0-9]*, [0-9]* ms' "$out" ||
        bad "no waiting fault in the snapshot"
    grep -q '(faultline-ctl)' "$out" && bad "faultline-ctl listed itself"
    check_clean
    # A failure that shows only once everything was stopped (an expected
    # line never came) still has the view of the moment the scenario ended.
    f=$here/snapshot-late.scenario
    expect_rc 1 "$run" --path "$path" "$f"
    contains "$f:9: expected line from manager not seen: a line this manager never prints"
    contains "--- faultline-ctl sessions faults, taken when the scenario ended, before anything was stopped ---"
    running_in_snapshot lazy-alloc "no running manager in the snapshot taken when the scenario ended"
    contains "[faultline-ctl] no faults waiting"
    check_clean
    ;;
shard)
    # Every scenario in exactly one shard, by sorted path whatever the
    # order given; a shard without scenarios passes.
    set -- "$here/pass-tokens.scenario" "$here/fail-exit.scenario" "$here/pass-running.scenario" \
        "$here/skip.scenario" "$here/fail-on.scenario"
    all=$(printf '%s\n' "$@" | LC_ALL=C sort)
    got=
    for k in 1 2 3; do
        "$run" --keep-going --tap --shard $k/3 "$@" >"$out" 2>&1
        rc=$?
        # (TAP reports skipped scenarios first: compare sorted.)
        names=$(sed -n 's/^\(not \)\{0,1\}ok [0-9]* - \([^: ]*\).*/\2/p' "$out" | sort)
        want=$(printf '%s\n' "$all" | awk -v k=$k 'NR % 3 == k % 3' |
               sed 's|.*/||; s|\.scenario$||' | sort)
        [ "$names" = "$want" ] || bad "shard $k/3 ran '$names', want '$want'"
        contains "1..$(printf '%s\n' "$want" | wc -l)"
        got="$got $names"
        case "$want" in
        *fail-*) [ $rc -eq 1 ] || bad "shard $k/3: exit $rc, want 1" ;;
        *pass-*) [ $rc -eq 0 ] || bad "shard $k/3: exit $rc, want 0" ;;
        esac
    done
    [ "$(echo $got | tr ' ' '\n' | sort)" = "$(printf '%s\n' "$all" | sed 's|.*/||; s|\.scenario$||' | sort)" ] ||
        bad "the shards together ran '$got'"
    # Argument order does not matter.
    "$run" --tap --shard 2/3 "$here/skip.scenario" "$here/pass-tokens.scenario" \
        "$here/pass-running.scenario" >"$out" 2>&1
    contains "ok 1 - pass-tokens"
    expect_rc 0 "$run" --shard 4/4 "$here/pass-tokens.scenario" "$here/pass-running.scenario"
    contains "faultline-run: shard 4/4 has none of the 2 scenarios"
    for bad_arg in 0/2 3/2 2 a/b 1/0; do
        expect_rc 2 "$run" --shard $bad_arg "$here/pass-tokens.scenario"
        contains "--shard wants K/N"
    done
    ;;
junit)
    # A <failure> carries the reason and the report: the log tails and
    # faultline-ctl's view; a broken scenario's <error> its reason.
    path=$(dirname "$BROKEN_MANAGER")
    expect_rc 2 "$run" --keep-going --path "$path" --junit "$out.xml" \
        "$here/fail-manager.scenario" "$here/pass-running.scenario" "$here/broken-token.scenario"
    grep -q '<failure message="[^"]*fail-manager.scenario:6: client exited with 1, expected exit 0" type="FAIL">[^<]*fail-manager.scenario:6: client exited with 1, expected exit 0$' "$out.xml" ||
        bad "junit: no <failure> with its reason as text: $(cat "$out.xml")"
    # The log tail, escaped, inside the element.
    sed -n '/<failure /,/<\/failure>/p' "$out.xml" >"$out.pat"
    for want in '[faultline-run] --- last ' '[client] client: at 0 read &quot;page 0x1000&quot;, want &quot;page 0&quot;' \
        'client: touched 16 pages, 16 wrong' '[faultline-run] --- faultline-ctl sessions faults' \
        '[faultline-ctl] session ' '</failure>'; do
        grep -qF -- "$want" "$out.pat" || bad "junit: the failure's text lacks: $want"
    done
    grep -q '<error message="[^"]*broken-token.scenario:[0-9]*: [^"]*" type="BROKEN">[^<]*broken-token.scenario:[0-9]*: ' "$out.xml" ||
        bad "junit: no <error> with its reason as text"
    grep -q '<testcase classname="scenarios" name="pass-running"' "$out.xml" || bad "junit: no pass-running"
    # Well-formed, where python3 can say so.
    if command -v python3 >/dev/null; then
        python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$out.xml" ||
            bad "junit: not well-formed XML"
    fi
    check_clean
    ;;
examples)
    # Whatever the examples' verdicts (their own tests judge those), no run
    # of them, several at once, leaves a process, a socket or a directory.
    "$run" -j 2 --keep-going "$here"/../../examples/*.scenario >"$out" 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 1 ] || bad "exit $rc"
    check_clean
    ;;
SIGINT | SIGTERM | SIGKILL)
    sig=${1#SIG}
    "$run" "$here/interrupt.scenario" >"$out" 2>&1 &
    pid=$!
    # Until both components run (bounded by interrupt.scenario's timeout).
    while ! grep -q "family started" "$out" || ! grep -q "start sleeper" "$out"; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
    done
    kill -s "$sig" $pid
    wait $pid
    rc=$?
    if [ "$sig" = KILL ]; then
        # The worker notices through PR_SET_PDEATHSIG and cleans up after it.
        check_clean wait
    else
        [ $rc -eq 1 ] || bad "exit $rc after SIG$sig, want 1"
        contains "interrupted by SIG$sig"
        check_clean
    fi
    ;;
*)
    echo "check.sh: unknown case $1"
    exit 1
    ;;
esac
exit $failed

#!/bin/sh
# The man pages in doc/man: lint-clean, installed, and in step with the
# programs. usage: man-lint.sh SOURCE_DIR [PAGE=PROGRAM...]
#  - every page passes `mandoc -Tlint` without a message (else, where only
#    groff is installed, `groff -ww -z -man`); neither: exit 77;
#  - doc/meson.build installs every page of doc/man and every doc/*.md;
#  - for each PAGE=PROGRAM: every option PROGRAM --help names is in PAGE.
# Exit 0 pass, 1 fail, 77 no linter.
src=$1
shift
man=$src/doc/man
fail=0

if command -v mandoc >/dev/null 2>&1; then
    linter="mandoc -Tlint"
elif command -v groff >/dev/null 2>&1; then
    linter="groff -ww -z -man"
else
    echo "SKIP: neither mandoc nor groff is installed (Debian: apt-get install mandoc)"
    exit 77
fi
for page in "$man"/*.[1-8]; do
    out=$($linter "$page" 2>&1)
    if [ -n "$out" ]; then
        echo "FAIL: $linter $page:"
        echo "$out"
        fail=1
    else
        echo "ok: $(basename "$page") ($linter)"
    fi
done

for page in "$man"/*.[1-8]; do
    grep -q "'man/$(basename "$page")'" "$src/doc/meson.build" ||
        { echo "FAIL: doc/meson.build does not install $(basename "$page")"; fail=1; }
done
for md in "$src"/doc/*.md; do
    grep -q "'$(basename "$md")'" "$src/doc/meson.build" ||
        { echo "FAIL: doc/meson.build does not install doc/$(basename "$md")"; fail=1; }
done

# Options: "--socket PATH", "-j N", "-v, --verbose" in --help; the page
# writes them with \- (roff's minus).
for pair in "$@"; do
    page=$man/${pair%%=*} prog=${pair#*=}
    help=$("$prog" --help 2>&1) || { echo "FAIL: $prog --help failed"; fail=1; continue; }
    opts=$(printf '%s\n' "$help" | grep -oE '(^|[][ ,|])--?[a-zA-Z][a-zA-Z0-9-]*' |
        sed 's/^[][ ,|]*//' | sort -u)
    missing=
    for o in $opts; do
        roff=$(printf '%s' "$o" | sed 's/-/\\-/g')
        grep -qF -- "$roff" "$page" || missing="$missing $o"
    done
    # ... and the page describes (.TP items) no option --help does not name
    # (-h and --help: every program takes them, not every usage says so).
    extra=
    for o in $(awk 'prev == ".TP" && /^\.B[IR]? \\-/ { print } { prev = $0 }' "$page" |
        grep -oE '(\\-)+[a-zA-Z][a-zA-Z0-9\\-]*' | sed 's/\\-/-/g' | sort -u); do
        printf '%s\n' "$opts" -h --help | grep -qxF -- "$o" || extra="$extra $o"
    done
    if [ -n "$missing$extra" ]; then
        [ -n "$missing" ] &&
            echo "FAIL: $(basename "$page") lacks options that $(basename "$prog") --help names:$missing"
        [ -n "$extra" ] &&
            echo "FAIL: $(basename "$page") describes options $(basename "$prog") --help does not name:$extra"
        fail=1
    else
        echo "ok: $(basename "$page") and $(basename "$prog") --help name the same options"
    fi
done
exit $fail

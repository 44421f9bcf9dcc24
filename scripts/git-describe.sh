#!/bin/sh
# The commit a build comes from, for fl_version() and every program's
# --version (meson's vcs_tag runs this on each build): git describe, with
# "-dirty" when tracked files have uncommitted changes. Read-only: no
# --dirty, which would refresh (write) the index under a lock that a
# concurrent git command could then not take. Exits 1 outside git.
cd "${1:-.}" || exit 1
d=$(git describe --always --tags 2>/dev/null) || exit 1
if GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then
    d="$d-dirty"
fi
echo "$d"

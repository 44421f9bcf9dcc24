# Sourced by demo.sh and test.sh: make sure the Debian packages are there.
# As root it installs what is missing; otherwise it prints the apt-get line.
# mandoc lints the man pages (tests/docs); systemtap-sdt-dev (sys/sdt.h) puts
# the USDT probes into the build, which doc/profiling.md's test then runs
# where perf is installed. perf and bpftrace are not required anywhere.
# python3-matplotlib draws faultline-bench's plots (its smoke test plots).
fl_packages="meson ninja-build pkg-config gcc liburing-dev check mandoc systemtap-sdt-dev python3-matplotlib"

fl_setup() {
    local missing=""
    for p in $fl_packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "faultline needs these Debian packages:$missing" >&2
        echo "install them as root with:" >&2
        echo "  apt-get update && apt-get install -y$missing" >&2
        exit 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq $missing >/dev/null
}

# Fuzzing (scripts/fuzz.sh) also needs clang and its libFuzzer runtime. Unlike
# fl_setup this never exits: without them the fuzzing step is skipped.
fl_fuzz_packages="clang libclang-rt-dev"

fl_setup_fuzz() {
    local missing=""
    for p in $fl_fuzz_packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzzing needs these Debian packages:$missing (apt-get install -y$missing)" >&2
        return 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq $missing >/dev/null
}
